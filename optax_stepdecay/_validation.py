"""Argument checks shared by the schedule and optimizer factories.

Every check names the argument and the value it got and raises
``ValueError`` at construction time. Traced values (hyperparameters under
``jax.vmap`` or ``optax.inject_hyperparams``) cannot be inspected and pass
through unchecked.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from optax_stepdecay._counts import is_traced


def _concrete(value: object) -> np.ndarray | None:
  """The value as a NumPy array, or None when it is traced."""
  if is_traced(value):
    return None
  return np.asarray(value)


def _is_integer_valued(value: object) -> bool:
  if isinstance(value, bool):
    return False
  if isinstance(value, numbers.Integral):
    return True
  array = np.asarray(value)
  return array.dtype != np.bool_ and np.issubdtype(array.dtype, np.integer)


def check_integer(name: str, value: object, *, minimum: int) -> None:
  """Requires an integer (Python, NumPy or a concrete integer array) >= minimum."""
  if is_traced(value):
    return
  if not _is_integer_valued(value):
    raise ValueError(f'{name} must be an integer, got {value!r} ({type(value).__name__}).')
  array = np.asarray(value, dtype=object)
  if any(int(v) < minimum for v in array.reshape(-1)):
    raise ValueError(f'{name} must be >= {minimum}, got {value!r}.')


def check_finite(name: str, value: object) -> None:
  """Requires a finite real number (or array of them)."""
  array = _concrete(value)
  if array is None:
    return
  if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
    raise ValueError(f'{name} must be a real number, got {value!r}.')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{name} must be finite, got {value!r}.')


def check_non_negative(name: str, value: object) -> None:
  """Requires a finite number >= 0."""
  check_finite(name, value)
  array = _concrete(value)
  if array is not None and np.any(array < 0):
    raise ValueError(f'{name} must be >= 0, got {value!r}.')


def check_decay_factor(name: str, value: object) -> None:
  """Requires a finite divisor >= 1 (the step is divided by it)."""
  check_finite(name, value)
  array = _concrete(value)
  if array is None or np.all(array >= 1):
    return
  hint = ''
  if np.all(array > 0):
    reciprocal = float(np.reshape(1 / array, -1)[0])
    hint = (
      f' The step is divided by {name}; to multiply it by {value!r} (as '
      f"torch's gamma does) pass {name}={reciprocal:g}."
    )
  raise ValueError(f'{name} must be >= 1, got {value!r}.{hint}')


def check_increasing_integers(
  name: str, values: Sequence[object], *, minimum: int = 0
) -> list[int]:
  """Requires strictly increasing integers >= minimum; returns them as ints."""
  result = []
  for i, value in enumerate(values):
    check_integer(f'{name}[{i}]', value, minimum=minimum)
    result.append(int(value))  # type: ignore[call-overload]
  for i in range(1, len(result)):
    if result[i] <= result[i - 1]:
      problem = 'repeated' if result[i] == result[i - 1] else 'not sorted'
      raise ValueError(
        f'{name} must be strictly increasing, got {list(result)!r} ({problem} at index {i}).'
      )
  return result


def check_sequence(name: str, value: object) -> Sequence[object]:
  """Requires a one-dimensional sequence (list, tuple or 1-D array)."""
  if isinstance(value, (str, bytes)) or not hasattr(value, '__len__'):
    raise ValueError(f'{name} must be a sequence, got {value!r}.')
  if hasattr(value, 'ndim') and value.ndim != 1:
    raise ValueError(f'{name} must be one-dimensional, got {value!r}.')
  return list(value)  # type: ignore[call-overload]

"""Argument checks shared by the schedule and optimizer factories.

Every check names the argument and the value it got and raises
``ValueError`` at construction time. Traced values (hyperparameters under
``jax.vmap`` or ``optax.inject_hyperparams``) cannot be inspected and pass
through unchecked.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any
from typing import cast

import jax.numpy as jnp
import numpy as np

from optax_stepdecay._counts import count_dtype
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import max_count

INT32_MAX = 2**31 - 1
"""The largest count of optax's int32 counters, which saturate there."""

INT32_COUNT = f"optax's int32 step counters stop at 2**31 - 1 = {INT32_MAX}"


def _concrete(value: object) -> np.ndarray | None:
  """The value as a NumPy array, or None when it is traced."""
  if is_traced(value):
    return None
  if isinstance(value, numbers.Integral) and not isinstance(value, bool):
    try:  # Python ints beyond int64 would otherwise give an object array
      return np.asarray(float(value))
    except OverflowError:
      return np.asarray(np.inf)
  array = np.asarray(value)
  # bfloat16 and float16 hyperparameters (optax.inject_hyperparams casts floats to the
  # parameters' dtype) are not NumPy numbers: check their values as float64.
  if array.dtype != np.float64 and jnp.issubdtype(array.dtype, jnp.floating):
    return array.astype(np.float64)
  return array


def is_positive_infinity(value: object) -> bool:
  """Whether a concrete real number is +inf (False when traced, or not a real number)."""
  array = _concrete(value)
  return (
    array is not None and np.issubdtype(array.dtype, np.number) and bool(np.all(np.isposinf(array)))
  )


def _is_integer_valued(value: object) -> bool:
  if isinstance(value, bool):
    return False
  if isinstance(value, numbers.Integral):
    return True
  array = np.asarray(value)
  return array.dtype != np.bool_ and np.issubdtype(array.dtype, np.integer)


def check_integer(
  name: str,
  value: object,
  *,
  minimum: object,
  maximum: int | None = None,
  why: str = '',
) -> None:
  """Requires an integer (Python, NumPy or a concrete integer array) in [minimum, maximum].

  ``why`` explains the maximum in the message. A traced ``minimum`` (another
  traced hyperparameter) skips the lower bound.
  """
  if is_traced(value):
    return
  if not _is_integer_valued(value):
    raise ValueError(f'{name} must be an integer, got {value!r} ({type(value).__name__}).')
  array = np.asarray(value, dtype=object)
  if not is_traced(minimum):
    low = int(minimum)  # type: ignore[call-overload]
    if any(int(v) < low for v in array.reshape(-1)):
      raise ValueError(f'{name} must be >= {low}, got {value!r}.')
  if maximum is not None and any(int(v) > maximum for v in array.reshape(-1)):
    reason = f': {why}' if why else ''
    raise ValueError(f'{name} must be <= {maximum}, got {value!r}{reason}.')


def check_count(name: str, value: object, *, minimum: object) -> None:
  """An integer that an optax int32 counter must be able to reach: <= 2**31 - 1."""
  check_integer(name, value, minimum=minimum, maximum=INT32_MAX, why=INT32_COUNT)


def check_reachable(
  name: str, value: object, count: object | None = None, what: str = 'a stage boundary'
) -> None:
  """Requires that a schedule's count can reach ``count`` (``value`` by default).

  ``what`` says what ``value`` puts at ``count``, for the message.

  Schedules evaluate ``uint32`` counts (``int64`` under ``jax_enable_x64``):
  a stage boundary or horizon beyond :func:`max_count` could never be
  reached, so the argument that puts it there is refused.
  """
  if is_traced(value) or is_traced(count):
    return
  at = value if count is None else count
  limit = max_count()
  if any(int(v) > limit for v in np.asarray(at, dtype=object).reshape(-1)):
    same = count is None or (np.ndim(cast(Any, value)) == 0 and int(cast(Any, value)) == count)
    where = '' if same else f' puts {what} at count {count}, which'
    hint = '' if count_dtype() == np.int64 else '; enable jax_enable_x64 for int64 counts'
    raise ValueError(
      f'{name}={value!r}{where} is beyond the largest count schedules evaluate, '
      f'{limit} ({count_dtype()}), so it is never reached{hint}.'
    )


def _float_dtype(dtype: object) -> np.dtype:
  return float_dtype() if dtype is None else np.dtype(cast(Any, dtype))


def check_finite(name: str, value: object, dtype: object = None) -> None:
  """Requires a real number (or array of them) that is finite in ``dtype``.

  ``dtype`` is the float dtype the value is used in: :func:`float_dtype` (that
  of schedule values) by default.
  """
  dtype = _float_dtype(dtype)
  array = _concrete(value)
  if array is None:
    return
  if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
    raise ValueError(f'{name} must be a real number, got {value!r}.')
  if not np.all(np.isfinite(array)):
    raise ValueError(f'{name} must be finite, got {value!r}.')
  largest = float(np.finfo(dtype).max)
  if np.any(np.abs(array.astype(np.float64)) > largest):
    raise ValueError(
      f'{name} must be finite, got {value!r}: it overflows {dtype} '
      f'(largest {largest:.4g}), the dtype it is computed in.'
    )


def check_positive(name: str, value: object, dtype: object = None) -> None:
  """Requires a finite number > 0 that is a normal number in ``dtype`` (see check_finite)."""
  check_finite(name, value, dtype)
  dtype = _float_dtype(dtype)
  array = _concrete(value)
  if array is None:
    return
  if np.any(array <= 0):
    raise ValueError(f'{name} must be > 0, got {value!r}.')
  tiny = float(np.finfo(dtype).tiny)
  if np.any(array < tiny):
    raise ValueError(
      f'{name} must be >= {tiny:.4g}, the smallest normal {dtype}, got {value!r}: '
      'smaller values round to 0, or to subnormals that accelerators flush to 0.'
    )


def check_scalar(name: str, value: object) -> None:
  """Requires a scalar (shape ``()``); traced values have their per-example shape."""
  shape = getattr(value, 'shape', None)  # traced values have their per-example shape
  if shape is None:
    shape = np.shape(cast(Any, value))
  if tuple(shape) != ():
    raise ValueError(
      f'{name} must be a scalar, got shape {shape}: {value!r}. For a sweep, build one '
      'transformation per value, for example inside jax.vmap.'
    )


def check_non_negative(name: str, value: object, dtype: object = None) -> None:
  """Requires a finite number >= 0 (finite in ``dtype``, see check_finite)."""
  check_finite(name, value, dtype)
  array = _concrete(value)
  if array is not None and np.any(array < 0):
    raise ValueError(f'{name} must be >= 0, got {value!r}.')


def check_decay_factor(name: str, value: object, dtype: object = None) -> None:
  """Requires a finite divisor >= 1 (the step is divided by it; finite in ``dtype``)."""
  check_finite(name, value, dtype)
  array = _concrete(value)
  if array is None or np.all(array >= 1):
    return
  hint = ''
  if np.all(array > 0):
    with np.errstate(over='ignore'):
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

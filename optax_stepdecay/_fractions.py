"""Phase boundaries as fractions of a budget, converted to steps once, exactly, on the host."""

from __future__ import annotations

import decimal
import numbers
from fractions import Fraction
from typing import Any

import numpy as np

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import is_traced


def _exact(name: str, value: object) -> Fraction:
  """The number ``value`` stands for, exactly: floats as their shortest decimal."""
  if is_traced(value):
    raise ValueError(
      f'{name} must be a concrete number, not traced: fractions of total_steps are '
      'converted to steps on the host.'
    )
  if isinstance(value, numbers.Rational) and not isinstance(value, bool):
    return Fraction(value)
  if isinstance(value, decimal.Decimal) and value.is_finite():
    return Fraction(value)
  array = np.asarray(value)
  if array.dtype == np.bool_ or array.dtype.kind not in 'iuf' or array.shape != ():
    raise ValueError(f'{name} must be a real number, got {value!r}.')
  if array.dtype.kind in 'iu':
    return Fraction(int(array))
  if not np.isfinite(array):
    raise ValueError(f'{name} must be finite, got {value!r}.')
  # The shortest decimal that rounds to the float in its own precision: what was typed.
  scalar: Any = array[()]  # a NumPy scalar of the float's own precision
  return Fraction(np.format_float_positional(scalar, unique=True, trim='-'))


def steps_of(name: str, fraction: object, total_steps: int) -> int:
  """The step ⌊f T⌋ at fraction f in [0, 1] of T = ``total_steps``, exactly.

  A float f is read as the shortest decimal that rounds to it, so 0.29 is
  29/100 (``int(0.29 * 100)`` is 28; this gives 29); ints, ``Fraction`` and
  ``Decimal`` values are exact as they are.
  """
  value = _exact(name, fraction)
  if not 0 <= value <= 1:
    raise ValueError(
      f'{name} must be a fraction in [0, 1] of total_steps={total_steps!r}, got {fraction!r}.'
    )
  return int(value * int(total_steps))  # int() of a non-negative Fraction is its floor


def check_total_steps(total_steps: object) -> int:
  """A concrete budget T >= 1 of updates, as an int."""
  if is_traced(total_steps):
    raise ValueError(
      'total_steps must be a concrete value, not traced: fractions and phase lengths are '
      "computed on the host (under optax.inject_hyperparams, list 'total_steps' in static_args)."
    )
  check.check_integer('total_steps', total_steps, minimum=1)
  return int(total_steps)  # type: ignore[call-overload]

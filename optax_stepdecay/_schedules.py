"""Step-decay schedules: Algorithm 1 of Wang, Magnusson and Johansson (2021) and its variants."""

from __future__ import annotations

import math
from collections.abc import Callable
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_count_constant
from optax_stepdecay._counts import constant_fits
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import max_count
from optax_stepdecay._stage_schedule import StageSchedule
from optax_stepdecay._stage_schedule import register

# Beyond this many stages the horizon's exact check would need huge integers;
# only decay factors within about 0.3% of 1 get there.
_EXACT_HORIZON_LIMIT = 10_000
# Geometric schedules precompute their stage boundaries up to 2**63.
_MAX_GEOMETRIC_STAGES = 10_000


def _as_float(value: jax.typing.ArrayLike) -> jax.Array:
  return jnp.asarray(value, dtype=float_dtype())


def _decayed(init_value, decay_factor, stage, end_value=None) -> jax.Array:
  """``max(init_value / decay_factor**stage, end_value)`` as a float array."""
  value = _as_float(init_value) / _as_float(decay_factor) ** stage.astype(float_dtype())
  if end_value is not None:
    value = jnp.maximum(value, _as_float(end_value))
  return value


def _arithmetic_stage_index(
  begin: jax.typing.ArrayLike, length: jax.typing.ArrayLike, num_stages: int | None
) -> Callable[[jax.Array], jax.Array]:
  """``k = (t - begin) // length`` for ``t >= begin`` (else 0), capped at num_stages - 1."""

  def stage_index(t: jax.Array) -> jax.Array:
    if not (constant_fits(begin) and constant_fits(length)):
      return jnp.zeros_like(t)  # no count reaches the first cut
    start, size = as_count_constant(begin), as_count_constant(length)
    index = jnp.where(t >= start, (t - start) // size, 0).astype(t.dtype)
    if num_stages is not None:
      last = num_stages - 1 if is_traced(num_stages) else min(num_stages - 1, max_count())
      index = jnp.minimum(index, as_count_constant(last))
    return index

  return stage_index


def _arithmetic_change_points(begin: int, length: int, num_stages: int | None):
  def change_points(limit: int) -> list[int]:
    last = num_stages if num_stages is not None else math.inf
    points, k = [], 1
    while k < last and begin + k * length < limit:
      points.append(begin + k * length)
      k += 1
      if len(points) > 1_000_000:
        break
    return points

  return change_points


def _sorted_stage_index(boundaries: Sequence[int]) -> Callable[[jax.Array], jax.Array]:
  """Number of boundaries <= t, by an O(log M) binary search."""
  tables: dict[np.dtype, np.ndarray] = {}

  def stage_index(t: jax.Array) -> jax.Array:
    dtype = count_dtype()
    if dtype not in tables:  # boundaries beyond every count are never reached
      tables[dtype] = np.asarray([b for b in boundaries if b <= max_count()], dtype=dtype)
    table = tables[dtype]
    if table.size == 0:
      return jnp.zeros_like(t)
    index = jnp.searchsorted(table, t, side='right', method='scan_unrolled')
    return index.astype(t.dtype)

  return stage_index


def _sorted_change_points(boundaries: Sequence[int]) -> Callable[[int], list[int]]:
  def change_points(limit: int) -> list[int]:
    return [b for b in boundaries if 0 < b < limit]

  return change_points


def _require_concrete(name: str, value: object, why: str) -> None:
  if is_traced(value):
    raise ValueError(f'{name} must be a concrete value, not traced: {why}.')


@register
def step_decay_schedule(
  init_value: jax.typing.ArrayLike,
  decay_factor: jax.typing.ArrayLike,
  stage_length: jax.typing.ArrayLike,
  *,
  num_stages: int | None = None,
  transition_begin: int = 0,
  end_value: float | None = None,
) -> StageSchedule:
  r"""Step decay, "constant and then cut": Algorithm 1 of Wang et al. (2021).

  The value at count :math:`t` is

  .. math::
    \eta_t = \max\left(\frac{\eta_0}{\alpha^{k(t)}}, \eta_{\min}\right), \quad
    k(t) = \min\left(\left\lfloor \frac{t - B}{S} \right\rfloor, N - 1\right)
    \text{ for } t \ge B, \quad k(t) = 0 \text{ for } t < B,

  with :math:`\eta_0` = ``init_value``, :math:`\alpha` = ``decay_factor``,
  :math:`S` = ``stage_length``, :math:`B` = ``transition_begin``, :math:`N` =
  ``num_stages`` and :math:`\eta_{\min}` = ``end_value``. The value changes
  exactly at counts :math:`B + kS` (the new value applies at the boundary, as
  in optax's staircase and torch's ``StepLR``). :math:`k` is computed with
  integer arithmetic and is exact for every count.

  Args:
    init_value: step size of the first stage, :math:`\eta_0`. May be a JAX
      array (for example traced under ``jax.vmap`` over a sweep).
    decay_factor: :math:`\alpha \ge 1`; the step is *divided* by it at each
      cut (torch's ``gamma=0.1`` is ``decay_factor=10``). May be an array.
    stage_length: steps per stage, :math:`S \ge 1`, an integer. May be an
      integer array.
    num_stages: number of stages :math:`N \ge 1`; the last one runs forever.
      None for no limit. May be an integer array, like ``stage_length``.
    transition_begin: count :math:`B \ge 0` at which the first stage starts
      counting; before it the value is ``init_value``.
    end_value: optional floor :math:`\eta_{\min}` on the value.

  Returns:
    A :class:`StageSchedule` mapping counts to float scalars.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=3)
    >>> [float(schedule(t)) for t in range(8)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
  """
  check.check_finite('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_integer('stage_length', stage_length, minimum=1)
  check.check_integer('transition_begin', transition_begin, minimum=0)
  if num_stages is not None:
    check.check_integer('num_stages', num_stages, minimum=1)
  if end_value is not None:
    check.check_finite('end_value', end_value)
    if not (is_traced(end_value) or is_traced(init_value)) and np.any(
      np.asarray(end_value) > np.asarray(init_value)
    ):
      raise ValueError(f'end_value={end_value!r} must be <= init_value={init_value!r}.')
  config = dict(
    init_value=init_value,
    decay_factor=decay_factor,
    stage_length=stage_length,
    num_stages=num_stages,
    transition_begin=transition_begin,
    end_value=end_value,
  )
  return _step_decay(
    'step_decay_schedule',
    config,
    init_value,
    decay_factor,
    stage_length,
    num_stages,
    transition_begin,
    end_value,
  )


def _step_decay(
  name,
  config,
  init_value,
  decay_factor,
  stage_length,
  num_stages,
  transition_begin=0,
  end_value=None,
) -> StageSchedule:
  def change_points(limit: int) -> list[int]:
    _require_concrete('stage_length', stage_length, 'stage tables are computed on the host')
    return _arithmetic_change_points(int(transition_begin), int(stage_length), num_stages)(limit)

  return StageSchedule(
    name,
    config,
    stage_index=_arithmetic_stage_index(transition_begin, stage_length, num_stages),
    stage_value=lambda k: _decayed(init_value, decay_factor, k, end_value),
    change_points=change_points,
    num_stages=num_stages,
  )


def horizon_num_stages(total_steps: int, decay_factor: float) -> int:
  r"""The paper's number of stages for a budget of T steps: :math:`\lfloor\log_\alpha T\rfloor`.

  Computed exactly: the largest :math:`N` with :math:`\alpha^N \le T`, at
  least 1 and at most T (every stage gets a step). A floating-point
  logarithm gets ``T=1000, alpha=10`` and ``T=243, alpha=3`` wrong
  (2.999... and 4.999...); this does not. For decay factors so close to 1
  that :math:`N` exceeds 10,000 the logarithm is used.

  The authors' deep-network runs used half as many stages,
  ``max(1, horizon_num_stages(T, alpha) // 2)``, which equals
  :math:`\lfloor \log_\alpha T / 2 \rfloor` (at least 1).

  Args:
    total_steps: the budget :math:`T \ge 1`.
    decay_factor: :math:`\alpha > 1`.

  Returns:
    The number of stages, an int.

  Example:
    >>> import optax_stepdecay as osd
    >>> osd.horizon_num_stages(1000, 10.0), osd.horizon_num_stages(243, 3)
    (3, 5)
  """
  check.check_integer('total_steps', total_steps, minimum=1)
  _require_concrete('decay_factor', decay_factor, 'the number of stages is computed on the host')
  check.check_decay_factor('decay_factor', decay_factor)
  if np.ndim(decay_factor) != 0:
    raise ValueError(f'decay_factor must be a scalar, got {decay_factor!r}.')
  alpha_float = float(decay_factor)
  if alpha_float == 1:
    raise ValueError(
      'decay_factor=1 never cuts, so log_alpha(total_steps) is undefined; '
      'pass num_stages explicitly.'
    )
  total = int(total_steps)
  estimate = math.floor(math.log(total) / math.log(alpha_float))
  if estimate <= _EXACT_HORIZON_LIMIT:
    alpha = Fraction(alpha_float)
    while estimate > 0 and alpha**estimate > total:
      estimate -= 1
    while alpha ** (estimate + 1) <= total:
      estimate += 1
  return max(1, min(estimate, total))


@register
def fixed_horizon_step_decay_schedule(
  init_value: jax.typing.ArrayLike,
  total_steps: int,
  decay_factor: jax.typing.ArrayLike,
  *,
  num_stages: int | None = None,
) -> StageSchedule:
  r"""Step decay for a known budget of T steps: the paper's horizon prescription.

  :math:`N` = ``num_stages`` or, by default, :math:`\lfloor\log_\alpha T\rfloor`
  (computed exactly by :func:`horizon_num_stages`); stages last
  :math:`S = \lfloor T / N \rfloor` steps, the cuts fall at
  :math:`S, 2S, \dots, (N-1)S` and the last stage runs to the end of training
  (and beyond, for counts past T):

  .. math::
    \eta_t = \eta_0 / \alpha^{\min(\lfloor t / S \rfloor, N - 1)}.

  For deep networks the authors used half as many stages; express that as
  ``num_stages=max(1, horizon_num_stages(T, alpha) // 2)``.

  Args:
    init_value: :math:`\eta_0`.
    total_steps: the budget :math:`T \ge 1` (number of updates).
    decay_factor: :math:`\alpha > 1` (or :math:`\ge 1` with ``num_stages``).
    num_stages: overrides :math:`N`; at most ``total_steps``.

  Returns:
    A :class:`StageSchedule` with ``num_stages`` stages.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.fixed_horizon_step_decay_schedule(1.0, 1000, 10.0)
    >>> print(schedule.stage_table())
    stage         start           end  value
        0             0           333  1
        1           333           666  0.1
        2           666             -  0.01
  """
  check.check_finite('init_value', init_value)
  check.check_integer('total_steps', total_steps, minimum=1)
  check.check_decay_factor('decay_factor', decay_factor)
  if num_stages is None:
    stages = horizon_num_stages(total_steps, decay_factor)  # type: ignore[arg-type]
  else:
    check.check_integer('num_stages', num_stages, minimum=1)
    if num_stages > total_steps:
      raise ValueError(
        f'num_stages={num_stages!r} must be <= total_steps={total_steps!r}: '
        'every stage needs at least one step.'
      )
    stages = int(num_stages)
  config = dict(
    init_value=init_value, total_steps=total_steps, decay_factor=decay_factor, num_stages=num_stages
  )
  return _step_decay(
    'fixed_horizon_step_decay_schedule',
    config,
    init_value,
    decay_factor,
    int(total_steps) // stages,
    stages,
  )


@register
def multistep_decay_schedule(
  init_value: jax.typing.ArrayLike,
  milestones: Sequence[int],
  decay_factor: jax.typing.ArrayLike = 10.0,
  *,
  steps_per_epoch: int | None = None,
) -> StageSchedule:
  r"""Step decay at given milestones, like torch's ``MultiStepLR``.

  .. math::
    \eta_t = \eta_0 / \alpha^{m(t)}, \quad m(t) = \#\{i : b_i \le t\},

  so the new value applies at the milestone itself (:math:`t = b_i`). With
  ``steps_per_epoch`` the milestones are epochs: :math:`b_i` = milestone
  :math:`\times` ``steps_per_epoch``. :math:`m(t)` is found by a binary
  search, O(log M) per evaluation, so thousands of milestones compile and run
  as fast as a few.

  Args:
    init_value: :math:`\eta_0`.
    milestones: strictly increasing non-negative integers (steps, or epochs
      with ``steps_per_epoch``).
    decay_factor: :math:`\alpha \ge 1`, the divisor at each milestone.
    steps_per_epoch: optional number of steps per epoch, :math:`\ge 1`.

  Returns:
    A :class:`StageSchedule` with ``len(milestones) + 1`` stages.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.multistep_decay_schedule(0.1, [2, 4], 10.0, steps_per_epoch=100)
    >>> [round(float(schedule(t)), 6) for t in (199, 200, 399, 400)]
    [0.1, 0.01, 0.01, 0.001]
  """
  check.check_finite('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  points = check.check_increasing_integers(
    'milestones', check.check_sequence('milestones', milestones)
  )
  if steps_per_epoch is not None:
    check.check_integer('steps_per_epoch', steps_per_epoch, minimum=1)
    points = [p * int(steps_per_epoch) for p in points]
  config = dict(
    init_value=init_value,
    milestones=list(milestones),
    decay_factor=decay_factor,
    steps_per_epoch=steps_per_epoch,
  )
  return StageSchedule(
    'multistep_decay_schedule',
    config,
    stage_index=_sorted_stage_index(points),
    stage_value=lambda m: _decayed(init_value, decay_factor, m),
    change_points=_sorted_change_points(points),
    num_stages=len(points) + 1,
  )


@register
def stagewise_schedule(
  boundaries: Sequence[int], values: Sequence[float] | jax.typing.ArrayLike
) -> StageSchedule:
  r"""A constant value per stage: ``values[i]`` on ``[boundaries[i-1], boundaries[i])``.

  .. math::
    \eta_t = v_{m(t)}, \quad m(t) = \#\{i : b_i \le t\}.

  Unlike ``optax.piecewise_constant_schedule`` the values are absolute (not
  multiplicative scales) and the lookup is a binary search.

  Args:
    boundaries: strictly increasing non-negative integer steps.
    values: ``len(boundaries) + 1`` finite values.

  Returns:
    A :class:`StageSchedule`.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.stagewise_schedule([10, 20], [0.5, 0.2, 0.05])
    >>> [round(float(schedule(t)), 6) for t in (9, 10, 19, 20)]
    [0.5, 0.2, 0.2, 0.05]
  """
  points = check.check_increasing_integers(
    'boundaries', check.check_sequence('boundaries', boundaries)
  )
  table: Any = values
  if not is_traced(values):
    table = check.check_sequence('values', values)
    check.check_finite('values', table)
  if len(table) != len(points) + 1:
    raise ValueError(
      f'values must have len(boundaries) + 1 = {len(points) + 1} entries, '
      f'got {len(table)}: {values!r}.'
    )
  config = dict(boundaries=list(boundaries), values=values)
  return StageSchedule(
    'stagewise_schedule',
    config,
    stage_index=_sorted_stage_index(points),
    stage_value=lambda m: _as_float(table)[m],
    change_points=_sorted_change_points(points),
    num_stages=len(points) + 1,
  )


def _geometric_boundaries(first: int, growth: float, num_stages: int | None) -> list[int]:
  """Exact stage starts: stage k lasts floor(first * growth**k) steps.

  ``growth`` is a binary float p / 2**e, so the length is
  ``(first * p**k) >> (e * k)``: integer arithmetic, no rounding.
  """
  limit = 2**63 - 1
  estimate = math.log(limit * (growth - 1) / first + 1) / math.log(growth)
  if num_stages is None and estimate > _MAX_GEOMETRIC_STAGES:
    raise ValueError(
      f'stage_growth={growth!r} is so close to 1 that about {estimate:.0f} stages '
      f'start below 2**63 (the limit is {_MAX_GEOMETRIC_STAGES}); pass num_stages.'
    )
  numerator, denominator = growth.as_integer_ratio()
  exponent = denominator.bit_length() - 1
  boundaries: list[int] = []
  start, scaled, shift = 0, first, 0
  last = math.inf if num_stages is None else num_stages - 1
  while len(boundaries) < last:
    start += scaled >> shift
    if start > limit:
      break
    boundaries.append(start)
    scaled, shift = scaled * numerator, shift + exponent
  return boundaries


@register
def geometric_stage_decay_schedule(
  init_value: jax.typing.ArrayLike,
  first_stage_length: int,
  decay_factor: jax.typing.ArrayLike = 2.0,
  stage_growth: float = 2.0,
  *,
  num_stages: int | None = None,
) -> StageSchedule:
  r"""Stages that grow geometrically: Hazan and Kale's epoch doubling.

  Stage :math:`k` lasts :math:`L_k = \lfloor L_0 g^k \rfloor` steps (exact
  integers) and has the value :math:`\eta_0 / \alpha^k`, with :math:`L_0` =
  ``first_stage_length``, :math:`g` = ``stage_growth`` and :math:`\alpha` =
  ``decay_factor``. The defaults (:math:`g = \alpha = 2`) are Epoch-GD's
  schedule for strongly convex problems. With ``stage_growth=1`` this is
  :func:`step_decay_schedule`.

  Args:
    init_value: :math:`\eta_0`.
    first_stage_length: :math:`L_0 \ge 1`, an integer.
    decay_factor: :math:`\alpha \ge 1`.
    stage_growth: :math:`g \ge 1`, a concrete number.
    num_stages: optional number of stages; the last one runs forever.

  Returns:
    A :class:`StageSchedule`.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.geometric_stage_decay_schedule(1.0, first_stage_length=2)
    >>> schedule.change_points(30)
    [2, 6, 14]
  """
  check.check_finite('init_value', init_value)
  check.check_integer('first_stage_length', first_stage_length, minimum=1)
  check.check_decay_factor('decay_factor', decay_factor)
  _require_concrete('stage_growth', stage_growth, 'stage boundaries are computed on the host')
  check.check_decay_factor('stage_growth', stage_growth)
  if num_stages is not None:
    check.check_integer('num_stages', num_stages, minimum=1)
  config = dict(
    init_value=init_value,
    first_stage_length=first_stage_length,
    decay_factor=decay_factor,
    stage_growth=stage_growth,
    num_stages=num_stages,
  )
  if float(stage_growth) == 1:
    return _step_decay(
      'geometric_stage_decay_schedule',
      config,
      init_value,
      decay_factor,
      int(first_stage_length),
      num_stages,
    )
  boundaries = _geometric_boundaries(int(first_stage_length), float(stage_growth), num_stages)
  return StageSchedule(
    'geometric_stage_decay_schedule',
    config,
    stage_index=_sorted_stage_index(boundaries),
    stage_value=lambda k: _decayed(init_value, decay_factor, k),
    change_points=_sorted_change_points(boundaries),
    num_stages=num_stages,
  )

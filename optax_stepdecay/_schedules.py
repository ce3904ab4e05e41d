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
from optax_stepdecay._counts import as_count
from optax_stepdecay._counts import as_count_constant
from optax_stepdecay._counts import constant_fits
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import max_count
from optax_stepdecay._fractions import check_total_steps
from optax_stepdecay._fractions import steps_of
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


def _tabulated(init_value, decay_factor, num_stages: int) -> Callable[[jax.Array], jax.Array]:
  """The value of stage m, looked up in a table of every stage's value.

  With concrete hyperparameters the table is computed once, eagerly, and the
  schedule is a gather from a constant: faster than a power per count, and the
  same value under ``jit`` as eagerly. Traced or per-entry hyperparameters
  (sweeps) compute ``init_value / decay_factor**m`` per count.
  """
  tables: dict[np.dtype, np.ndarray] = {}

  def stage_value(stage: jax.Array) -> jax.Array:
    if is_traced(init_value) or is_traced(decay_factor):
      return _decayed(init_value, decay_factor, stage)
    if np.ndim(init_value) or np.ndim(decay_factor):
      return _decayed(init_value, decay_factor, stage)
    dtype = float_dtype()
    if dtype not in tables:
      with jax.ensure_compile_time_eval():
        stages = jnp.arange(num_stages, dtype=count_dtype())
        tables[dtype] = np.asarray(_decayed(init_value, decay_factor, stages))
    return jnp.asarray(tables[dtype])[stage]

  return stage_value


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
      last: Any = num_stages - 1
      if not is_traced(num_stages):  # a Python, NumPy or JAX integer, or an array of them
        last = np.minimum(np.asarray(num_stages, dtype=np.int64) - 1, max_count())
      index = jnp.minimum(index, as_count_constant(last))
    return index

  return stage_index


def _arithmetic_change_points(
  begin: int, length: int, num_stages: int | None
) -> Callable[[int], range]:
  """The cuts ``begin + k * length`` (1 <= k < num_stages) below ``limit``, as a range."""

  def change_points(limit: int) -> range:
    count = max((limit - 1 - begin) // length, 0)  # k * length < limit - begin
    if num_stages is not None:
      count = min(count, num_stages - 1)
    return range(begin + length, begin + (count + 1) * length, length)

  return change_points


# Up to this many boundaries, comparing a count with every one of them (fused into one pass)
# is faster than a binary search; above it the search's O(log M) wins. Measured with
# `python -m benchmarks.perf` on a 2-core CPU (100,000 counts: 0.15 against 0.21 ms at 32
# boundaries, 0.9 against 0.23 ms at 64).
COMPARE_ALL_MAX_BOUNDARIES = 32


def _sorted_stage_index(
  boundaries: Sequence[int], method: str | None = None
) -> Callable[[jax.Array], jax.Array]:
  """Number of boundaries <= t: compared with each (few) or by binary search (many).

  ``method`` forces ``'compare_all'`` or ``'scan_unrolled'`` (for tests); by default it
  follows ``COMPARE_ALL_MAX_BOUNDARIES``. Both give the same index for every count.
  """
  tables: dict[np.dtype, np.ndarray] = {}

  def stage_index(t: jax.Array) -> jax.Array:
    dtype = count_dtype()
    if dtype not in tables:  # boundaries beyond every count are never reached
      tables[dtype] = np.asarray([b for b in boundaries if b <= max_count()], dtype=dtype)
    table = tables[dtype]
    if table.size == 0:
      return jnp.zeros_like(t)
    few = table.size <= COMPARE_ALL_MAX_BOUNDARIES
    strategy = method or ('compare_all' if few else 'scan_unrolled')
    return jnp.searchsorted(table, t, side='right', method=strategy).astype(t.dtype)

  return stage_index


def _sorted_change_points(boundaries: Sequence[int]) -> Callable[[int], list[int]]:
  def change_points(limit: int) -> list[int]:
    return [b for b in boundaries if 0 < b < limit]

  return change_points


def _require_concrete(name: str, value: object, why: str) -> None:
  if is_traced(value):
    raise ValueError(
      f'{name} must be a concrete value, not traced: {why} (under '
      f'optax.inject_hyperparams, list {name!r} in static_args).'
    )


def _staged(name, config, stage_index, stage_value, change_points, num_stages) -> StageSchedule:
  """A schedule whose value depends on the count only through its stage index."""

  def value(count: jax.typing.ArrayLike) -> jax.Array:
    return stage_value(stage_index(as_count(count)))

  return StageSchedule(name, config, value, stage_index, change_points, num_stages)


def _check_arithmetic_boundaries(stage_length, num_stages, transition_begin) -> None:
  """Every boundary B + k S (1 <= k < N) must be a count schedules can reach."""
  if any(is_traced(v) for v in (stage_length, num_stages, transition_begin)):
    return
  stages = -1 if num_stages is None else num_stages  # -1: no limit
  columns = np.broadcast_arrays(
    *(np.asarray(v, dtype=object) for v in (stage_length, stages, transition_begin))
  )
  for length, n, begin in zip(*(c.reshape(-1) for c in columns), strict=True):
    if n == 1:
      continue  # a single stage: no boundary
    check.check_reachable('transition_begin', transition_begin, int(begin))
    check.check_reachable('stage_length', stage_length, int(length))
    check.check_reachable('stage_length', stage_length, int(begin) + int(length))
    if n > 2:
      check.check_reachable('num_stages', num_stages, int(begin) + (int(n) - 1) * int(length))


@register
def step_decay_schedule(
  init_value: jax.typing.ArrayLike,
  *,
  decay_factor: jax.typing.ArrayLike,
  stage_length: jax.typing.ArrayLike,
  num_stages: int | None = None,
  transition_begin: int = 0,
  end_value: float | None = None,
) -> StageSchedule:
  """Step decay, "constant and then cut": Algorithm 1 of Wang et al. (2021).

  The value at count t is::

    η_t = max(η₀ / α^k(t), η_min),   k(t) = min(⌊(t - B) / S⌋, N - 1) for t ≥ B,
                                     k(t) = 0                         for t < B,

  with η₀ = ``init_value``, α = ``decay_factor``, S = ``stage_length``,
  B = ``transition_begin``, N = ``num_stages`` and η_min = ``end_value``. The
  value changes exactly at counts B + kS (the new value applies at the
  boundary, as in optax's staircase and torch's ``StepLR``). k is computed
  with integer arithmetic and is exact for every count. Every cut B + kS
  (k < N) must be a count the schedule can evaluate (see
  :class:`StageSchedule`), or the arguments are refused.

  Args:
    init_value: step size of the first stage, η₀ > 0. May be a JAX
      array (for example traced under ``jax.vmap`` over a sweep).
    decay_factor: α ≥ 1, the paper's decay factor: the step is divided by it
      at each cut (torch's ``gamma`` and optax's ``decay_rate`` multiply:
      ``gamma=0.1`` is ``decay_factor=10``). May be an array.
    stage_length: steps per stage, S ≥ 1, an integer. May be an
      integer array.
    num_stages: number of stages N ≥ 1; the last one runs forever.
      None for no limit. May be an integer array, like ``stage_length``.
    transition_begin: count B ≥ 0 at which the first stage starts
      counting; before it the value is ``init_value``.
    end_value: optional floor η_min ≥ 0 on the value.

  Returns:
    A :class:`StageSchedule` mapping counts to float scalars.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021, Algorithm 1: https://arxiv.org/abs/2102.09393.
    Its boundary convention is torch's ``StepLR``:
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.StepLR.html

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=3)
    >>> [float(schedule(t)) for t in range(8)]
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
  """
  check.check_positive('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_integer('stage_length', stage_length, minimum=1)
  check.check_integer('transition_begin', transition_begin, minimum=0)
  if num_stages is not None:
    check.check_integer('num_stages', num_stages, minimum=1)
  _check_arithmetic_boundaries(stage_length, num_stages, transition_begin)
  if end_value is not None:
    check.check_non_negative('end_value', end_value)
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
  def change_points(limit: int) -> range:
    _require_concrete('stage_length', stage_length, 'stage tables are computed on the host')
    return _arithmetic_change_points(int(transition_begin), int(stage_length), num_stages)(limit)

  return _staged(
    name,
    config,
    stage_index=_arithmetic_stage_index(transition_begin, stage_length, num_stages),
    stage_value=lambda k: _decayed(init_value, decay_factor, k, end_value),
    change_points=change_points,
    num_stages=num_stages,
  )


def horizon_num_stages(total_steps: int, *, decay_factor: float) -> int:
  """The paper's number of stages for a budget of T steps: ⌊log_α T⌋.

  Computed exactly: the largest N with α^N ≤ T, at
  least 1 and at most T (every stage gets a step). A floating-point
  logarithm gets ``T=1000, alpha=10`` and ``T=243, alpha=3`` wrong
  (2.999... and 4.999...); this does not. For decay factors so close to 1
  that N exceeds 10,000 the logarithm is used.

  The authors' deep-network runs used half as many stages,
  ``max(1, horizon_num_stages(T, decay_factor=alpha) // 2)``, which equals
  ⌊log_α T / 2⌋ (at least 1).

  Args:
    total_steps: the budget T ≥ 1.
    decay_factor: α > 1, the paper's decay factor, which divides the step at
      each cut (torch's ``gamma`` and optax's ``decay_rate`` multiply: α is
      1 / ``gamma``).

  Returns:
    The number of stages, an int.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021: the horizon rule, N = log_α T stages
    of T / log_α T steps, rounded down as in the authors' code:
    https://arxiv.org/abs/2102.09393

  Example:
    >>> import optax_stepdecay as osd
    >>> osd.horizon_num_stages(1000, decay_factor=10.0), osd.horizon_num_stages(243, decay_factor=3)
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
  *,
  total_steps: int,
  decay_factor: jax.typing.ArrayLike,
  num_stages: int | None = None,
) -> StageSchedule:
  """Step decay for a known budget of T steps: the paper's horizon prescription.

  N = ``num_stages`` or, by default, ⌊log_α T⌋ (computed exactly by
  :func:`horizon_num_stages`); stages last S = ⌊T / N⌋ steps, the cuts fall at
  S, 2S, ..., (N-1)S and the last stage runs to the end of training (and
  beyond, for counts past T)::

    η_t = η₀ / α^min(⌊t / S⌋, N - 1)

  For deep networks the authors used half as many stages; express that as
  ``num_stages=max(1, horizon_num_stages(T, decay_factor=alpha) // 2)``.

  Args:
    init_value: η₀ > 0.
    total_steps: the budget T ≥ 1 (number of updates); its last
      count T - 1 must be one the schedule can evaluate (see
      :class:`StageSchedule`).
    decay_factor: α > 1 (or ≥ 1 with ``num_stages``), the paper's decay
      factor: the step is divided by it at each cut (torch's ``gamma`` and
      optax's ``decay_rate`` multiply: ``gamma=0.1`` is ``decay_factor=10``).
    num_stages: overrides N; at most ``total_steps``.

  Returns:
    A :class:`StageSchedule` with ``num_stages`` stages.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021: Algorithm 1 with the horizon rule,
    N = log_α T stages of T / log_α T steps:
    https://arxiv.org/abs/2102.09393

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.fixed_horizon_step_decay_schedule(1.0, total_steps=1000, decay_factor=10.0)
    >>> print(schedule.stage_table())
    stage         start           end  value
        0             0           333  1
        1           333           666  0.1
        2           666             -  0.01
  """
  check.check_positive('init_value', init_value)
  _require_concrete('total_steps', total_steps, 'stage lengths are computed on the host')
  check.check_integer('total_steps', total_steps, minimum=1)
  check.check_reachable('total_steps', total_steps, int(total_steps) - 1, 'its last update')
  check.check_decay_factor('decay_factor', decay_factor)
  if num_stages is None:
    stages = horizon_num_stages(total_steps, decay_factor=decay_factor)  # type: ignore[arg-type]
  else:
    _require_concrete('num_stages', num_stages, 'stage lengths are computed on the host')
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
  *,
  milestones: Sequence[int],
  decay_factor: jax.typing.ArrayLike = 10.0,
  steps_per_epoch: int | None = None,
  total_steps: int | None = None,
) -> StageSchedule:
  """Step decay at given milestones, like torch's ``MultiStepLR``.

  With milestones b_1 < b_2 < ...::

    η_t = η₀ / α^m(t),   m(t) = number of milestones b_i ≤ t,

  so the new value applies at the milestone itself (t = b_i). With
  ``steps_per_epoch`` the milestones are epochs: b_i = milestone times
  ``steps_per_epoch``. With ``total_steps`` T they are fractions of the
  budget ("cut at 50 % and 75 %": ``[0.5, 0.75]``), converted once on the
  host, exactly: b_i = ⌊f_i T⌋, a float read as the shortest decimal that
  rounds to it (0.29 of 100 steps is step 29, where ``int(0.29 * 100)`` is
  28). m(t) is found by a binary search, O(log M) per
  evaluation, so thousands of milestones compile and run as fast as a few.

  Args:
    init_value: η₀ > 0.
    milestones: strictly increasing non-negative integers (steps, or epochs
      with ``steps_per_epoch``), each a count the schedule can evaluate (see
      :class:`StageSchedule`). A milestone at 0 is legal and applies from the
      first update, which then uses ``init_value / decay_factor``, as with
      torch's ``MultiStepLR``.
    decay_factor: α ≥ 1: the step is divided by it at each milestone
      (torch's ``MultiStepLR`` ``gamma`` and the scales of optax's
      ``piecewise_constant_schedule`` multiply: ``gamma=0.1`` is ``decay_factor=10``).
    steps_per_epoch: optional number of steps per epoch, ≥ 1.
    total_steps: optional budget T ≥ 1 (exclusive with ``steps_per_epoch``);
      the milestones are then increasing fractions in [0, 1] of it that fall
      on distinct steps.

  Returns:
    A :class:`StageSchedule` with ``len(milestones) + 1`` stages.

  References:
    torch's ``MultiStepLR``:
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.MultiStepLR.html

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.multistep_decay_schedule(
    ...   0.1, milestones=[2, 4], decay_factor=10.0, steps_per_epoch=100
    ... )
    >>> [round(float(schedule(t)), 6) for t in (199, 200, 399, 400)]
    [0.1, 0.01, 0.01, 0.001]
  """
  check.check_positive('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  given = check.check_sequence('milestones', milestones)
  if total_steps is not None:
    points = _fraction_milestones(given, steps_per_epoch, total_steps)
  else:
    points = check.check_increasing_integers('milestones', given)
  if steps_per_epoch is not None:
    _require_concrete('steps_per_epoch', steps_per_epoch, 'milestones are computed on the host')
    check.check_integer('steps_per_epoch', steps_per_epoch, minimum=1)
    points = [p * int(steps_per_epoch) for p in points]
  for i, point in enumerate(points):
    check.check_reachable(f'milestones[{i}]', given[i], point)
  config = dict(
    init_value=init_value,
    milestones=list(milestones),
    decay_factor=decay_factor,
    steps_per_epoch=steps_per_epoch,
  )
  if total_steps is not None:  # only then: earlier JSON keeps its form
    config['total_steps'] = total_steps
  return _staged(
    'multistep_decay_schedule',
    config,
    stage_index=_sorted_stage_index(points),
    stage_value=_tabulated(init_value, decay_factor, len(points) + 1),
    change_points=_sorted_change_points(points),
    num_stages=len(points) + 1,
  )


def _fraction_milestones(
  given: Sequence[object], steps_per_epoch: Any, total_steps: Any
) -> list[int]:
  """Milestones given as fractions of ``total_steps``, as strictly increasing steps."""
  if steps_per_epoch is not None:
    raise ValueError(
      f'Pass at most one of steps_per_epoch and total_steps, got '
      f'steps_per_epoch={steps_per_epoch!r} and total_steps={total_steps!r}.'
    )
  total = check_total_steps(total_steps)
  points = [steps_of(f'milestones[{i}]', m, total) for i, m in enumerate(given)]
  for i in range(1, len(points)):
    if points[i] <= points[i - 1]:
      raise ValueError(
        f'milestones must be increasing fractions on distinct steps of total_steps={total}, '
        f'got {list(given)!r}: steps {points} (step = floor(fraction * total_steps)).'
      )
  return points


@register
def stagewise_schedule(
  boundaries: Sequence[int], *, values: Sequence[float] | jax.typing.ArrayLike
) -> StageSchedule:
  """A constant value per stage: ``values[i]`` on ``[boundaries[i-1], boundaries[i])``.

  With boundaries b_1 < b_2 < ... and values v_0, v_1, ...::

    η_t = v_m(t),   m(t) = number of boundaries b_i ≤ t.

  Unlike ``optax.piecewise_constant_schedule`` the values are absolute (not
  multiplicative scales) and the lookup is a binary search.

  Args:
    boundaries: strictly increasing non-negative integer steps, each a count
      the schedule can evaluate (see :class:`StageSchedule`). A boundary at 0
      is legal: ``values[0]`` is then never used.
    values: ``len(boundaries) + 1`` finite values, all > 0.

  Returns:
    A :class:`StageSchedule`.

  References:
    ``optax.piecewise_constant_schedule``, with absolute values instead of
    multiplicative scales: https://optax.readthedocs.io

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.stagewise_schedule([10, 20], values=[0.5, 0.2, 0.05])
    >>> [round(float(schedule(t)), 6) for t in (9, 10, 19, 20)]
    [0.5, 0.2, 0.2, 0.05]
  """
  points = check.check_increasing_integers(
    'boundaries', check.check_sequence('boundaries', boundaries)
  )
  for i, point in enumerate(points):
    check.check_reachable(f'boundaries[{i}]', point)
  table: Any = values
  if not is_traced(values):
    table = check.check_sequence('values', values)
    check.check_positive('values', table)
  if len(table) != len(points) + 1:
    raise ValueError(
      f'values must have len(boundaries) + 1 = {len(points) + 1} entries, '
      f'got {len(table)}: {values!r}.'
    )
  config = dict(boundaries=list(boundaries), values=values)
  return _staged(
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
  too_many = num_stages is None or num_stages - 1 > _MAX_GEOMETRIC_STAGES
  if too_many and estimate > _MAX_GEOMETRIC_STAGES:
    raise ValueError(
      f'stage_growth={growth!r} is so close to 1 that about {estimate:.0f} stages '
      f'start below 2**63 (the limit is {_MAX_GEOMETRIC_STAGES}); pass num_stages'
      f'{"" if num_stages is None else f" <= {_MAX_GEOMETRIC_STAGES + 1}, got {num_stages}"}.'
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
  *,
  first_stage_length: int,
  decay_factor: jax.typing.ArrayLike = 2.0,
  stage_growth: float = 2.0,
  num_stages: int | None = None,
) -> StageSchedule:
  """Stages that grow geometrically: Hazan and Kale's epoch doubling.

  Stage k lasts L_k = ⌊L₀ g^k⌋ steps (exact
  integers) and has the value η₀ / α^k, with L₀ =
  ``first_stage_length``, g = ``stage_growth`` and α =
  ``decay_factor``. The defaults (g = α = 2) are Epoch-GD's
  schedule for strongly convex problems. With ``stage_growth=1`` this is
  :func:`step_decay_schedule`.

  Args:
    init_value: η₀ > 0.
    first_stage_length: L₀ ≥ 1, an integer.
    decay_factor: α ≥ 1, the paper's decay factor: the step is divided by it
      at each cut (torch's ``gamma`` and optax's ``decay_rate`` multiply:
      ``gamma=0.1`` is ``decay_factor=10``).
    stage_growth: g ≥ 1, a concrete number.
    num_stages: optional number of stages; the last one runs forever. Its
      stages must all begin at counts the schedule can evaluate (see
      :class:`StageSchedule`).

  Returns:
    A :class:`StageSchedule`.

  References:
    Hazan and Kale, "Beyond the Regret Minimization Barrier: Optimal Algorithms
    for Stochastic Strongly-Convex Optimization", JMLR 15 (2014), Epoch-GD:
    https://jmlr.org/papers/v15/hazan14a.html

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.geometric_stage_decay_schedule(1.0, first_stage_length=2)
    >>> schedule.change_points(30)
    [2, 6, 14]
  """
  check.check_positive('init_value', init_value)
  _require_concrete(
    'first_stage_length', first_stage_length, 'stage boundaries are computed on the host'
  )
  check.check_integer('first_stage_length', first_stage_length, minimum=1)
  check.check_reachable('first_stage_length', first_stage_length)
  check.check_decay_factor('decay_factor', decay_factor)
  _require_concrete('stage_growth', stage_growth, 'stage boundaries are computed on the host')
  check.check_decay_factor('stage_growth', stage_growth)
  if num_stages is not None:
    _require_concrete('num_stages', num_stages, 'stage boundaries are computed on the host')
    check.check_integer('num_stages', num_stages, minimum=1)
  config = dict(
    init_value=init_value,
    first_stage_length=first_stage_length,
    decay_factor=decay_factor,
    stage_growth=stage_growth,
    num_stages=num_stages,
  )
  if float(stage_growth) == 1:
    _check_arithmetic_boundaries(first_stage_length, num_stages, 0)
    return _step_decay(
      'geometric_stage_decay_schedule',
      config,
      init_value,
      decay_factor,
      int(first_stage_length),
      num_stages,
    )
  boundaries = _geometric_boundaries(int(first_stage_length), float(stage_growth), num_stages)
  if num_stages is not None and boundaries:
    last = boundaries[-1] if len(boundaries) == num_stages - 1 else 2**63  # beyond int64
    check.check_reachable('num_stages', num_stages, last)
  return _staged(
    'geometric_stage_decay_schedule',
    config,
    stage_index=_sorted_stage_index(boundaries),
    stage_value=lambda k: _decayed(init_value, decay_factor, k),
    change_points=_sorted_change_points(boundaries),
    num_stages=num_stages,
  )

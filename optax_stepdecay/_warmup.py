"""Linear warmup in front of any schedule."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_count
from optax_stepdecay._counts import as_count_constant
from optax_stepdecay._counts import constant_fits
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import max_count
from optax_stepdecay._stage_schedule import Stage
from optax_stepdecay._stage_schedule import StageSchedule
from optax_stepdecay._stage_schedule import reaches_every_stage
from optax_stepdecay._stage_schedule import register


def _after_warmup(warmup_steps: int, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Whether the ramp is over, and the count the wrapped schedule sees."""
  if not constant_fits(warmup_steps):
    return jnp.zeros_like(t, dtype=bool), jnp.zeros_like(t)
  warmup = as_count_constant(warmup_steps)
  done = t >= warmup
  return done, jnp.where(done, t - warmup, 0).astype(t.dtype)


def _value(
  schedule: optax.Schedule, warmup: int, init_value: Any, count: jax.typing.ArrayLike
) -> jax.Array:
  t = as_count(count)
  done, shifted = _after_warmup(warmup, t)
  kind = jnp.result_type(count)
  if jnp.issubdtype(kind, jnp.integer) and not (
    isinstance(count, int) and count > jnp.iinfo(kind).max
  ):
    # The caller's integer dtype (int32 for a Python int, as optax counts), not the unsigned
    # one schedules compute in: a foreign schedule may subtract from it.
    shifted = shifted.astype(kind)
  after = jnp.asarray(schedule(shifted), dtype=float_dtype())
  if not warmup:
    return after
  start = jnp.asarray(init_value, dtype=float_dtype())
  target = jnp.asarray(schedule(0), dtype=float_dtype())
  fraction = t.astype(float_dtype()) / warmup
  return jnp.where(done, after, start + (target - start) * fraction)


def _index(schedule: optax.Schedule, warmup: int, t: jax.Array) -> jax.Array:
  done, shifted = _after_warmup(warmup, t)
  inner = _wrapped(schedule).stage_index(shifted)
  return jnp.where(done, inner + (1 if warmup else 0), 0).astype(t.dtype)


def _points(schedule: optax.Schedule, warmup: int, limit: int) -> list[int]:
  inner = _wrapped(schedule).change_points(max(limit - warmup, 0))
  head = [warmup] if 0 < warmup < limit else []
  return head + [warmup + p for p in inner]


def _table(
  schedule: optax.Schedule, warmup: int, init_value: Any, num_steps: int | None
) -> list[Stage]:
  """The ramp, then the wrapped schedule's stages, shifted."""
  inner_steps = None if num_steps is None else max(num_steps - warmup, 0)
  inner_rows = [
    row._replace(start=row.start + warmup, end=None if row.end is None else row.end + warmup)
    for row in _wrapped(schedule).stages(inner_steps)
  ]
  if not warmup:
    return inner_rows
  ramp_end = warmup if num_steps is None else min(warmup, num_steps)
  ends = [float(_value(schedule, warmup, init_value, t)) for t in (0, ramp_end)]
  return [Stage(0, ramp_end, *ends)] + (inner_rows if ramp_end == warmup else [])


def _ramp_shape(schedule: optax.Schedule, warmup: int, row: Stage) -> str:
  """The warmup's ramp is linear; the wrapped schedule's ramps keep their shapes."""
  if row.start < warmup:
    return 'linear'
  end = None if row.end is None else row.end - warmup
  return _wrapped(schedule)._ramp_shape(row._replace(start=row.start - warmup, end=end))


def _wrapped(schedule: optax.Schedule) -> StageSchedule:
  if not isinstance(schedule, StageSchedule):
    raise ValueError(f'{schedule!r} is not a schedule of this package: it has no stages.')
  return schedule


@register
def with_linear_warmup(
  schedule: optax.Schedule, *, warmup_steps: int, init_value: float = 0.0
) -> StageSchedule:
  """Prepends a linear warmup to ``schedule``.

  The value at count t is::

    η_t = v₀ + (s(0) - v₀) t / W   for t < W
          s(t - W)                 for t ≥ W

  with v₀ = ``init_value``, W = ``warmup_steps`` and s = ``schedule``. The
  wrapped schedule starts at its own count 0 at step W, so its stage
  boundaries move W steps later. At count 0 the value is ``init_value`` (0 by
  default, so the first update is zero, as in optax's warmup schedules).

  Args:
    schedule: any optax schedule; stage tables, plots and serialisation need
      one of this package.
    warmup_steps: W ≥ 0; 0 returns the schedule unchanged in value.
      The ramp's end and the wrapped schedule's shifted stage boundaries must
      be counts the schedule can evaluate (see :class:`StageSchedule`).
    init_value: the value at count 0, ≥ 0.

  Returns:
    A :class:`StageSchedule`.

  References:
    Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour"
    (2017), gradual warmup: https://arxiv.org/abs/1706.02677

  Example:
    >>> import optax_stepdecay as osd
    >>> base = osd.step_decay_schedule(1.0, decay_factor=10.0, stage_length=4)
    >>> schedule = osd.with_linear_warmup(base, warmup_steps=2)
    >>> [round(float(schedule(t)), 6) for t in range(8)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1]
  """
  if not callable(schedule):
    raise ValueError(f'schedule must be a callable of the count, got {schedule!r}.')
  if is_traced(warmup_steps):
    raise ValueError(
      'warmup_steps must be a concrete value, not traced: the ramp is laid out on the host '
      "(under optax.inject_hyperparams, list 'warmup_steps' in static_args)."
    )
  check.check_integer('warmup_steps', warmup_steps, minimum=0)
  check.check_reachable('warmup_steps', warmup_steps)
  check.check_non_negative('init_value', init_value)
  shifted_reach = max_count() - int(warmup_steps)
  if isinstance(schedule, StageSchedule) and not reaches_every_stage(schedule, shifted_reach):
    raise ValueError(
      f'warmup_steps={warmup_steps!r} moves the stage boundaries of {schedule!r} '
      f'beyond the largest count schedules evaluate, {max_count()} ({count_dtype()}), '
      'so they are never reached.'
    )
  warmup_steps = int(warmup_steps)
  num_stages = schedule.num_stages if isinstance(schedule, StageSchedule) else None
  return StageSchedule(
    'with_linear_warmup',
    dict(schedule=schedule, warmup_steps=warmup_steps, init_value=init_value),
    value_fn=functools.partial(_value, schedule, warmup_steps, init_value),
    index_fn=functools.partial(_index, schedule, warmup_steps),
    points_fn=functools.partial(_points, schedule, warmup_steps),
    num_stages=None if num_stages is None else num_stages + (1 if warmup_steps else 0),
    table_fn=functools.partial(_table, schedule, warmup_steps, init_value),
    ramp_shape_fn=functools.partial(_ramp_shape, schedule, warmup_steps),
  )

"""Warmup-stable-decay (WSD): warm up, hold the peak, then cool down over the last steps."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_count
from optax_stepdecay._counts import as_count_constant
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._fractions import check_total_steps
from optax_stepdecay._fractions import steps_of
from optax_stepdecay._schedules import _tabulated
from optax_stepdecay._stage_schedule import Stage
from optax_stepdecay._stage_schedule import StageSchedule
from optax_stepdecay._stage_schedule import register

DECAY_SHAPES = ('linear', 'cosine', '1-sqrt', 'step')
"""Decay shapes, in the order of their codes in :class:`CooldownState`."""

WARMUP_SHAPES = ('linear', 'cosine', '1-sqrt')

_LENGTHS = ('warmup_steps', 'stable_steps', 'decay_steps')


def check_shape(name: str, shape: object, allowed: tuple[str, ...]) -> int:
  """The code of a shape name (its index in ``allowed``)."""
  if not isinstance(shape, str) or shape not in allowed:
    raise ValueError(f'{name} must be one of {", ".join(map(repr, allowed))}; got {shape!r}.')
  return allowed.index(shape)


def _fractions(offset: jax.Array, length: jax.Array) -> tuple[jax.Array, jax.Array]:
  """p = o / L and 1 - p of a phase of length L at offset o <= L, as floats.

  Both are an exact integer (o, L - o) times 1 / max(L, 1), so that a
  schedule, whose L is a compile-time constant, and :func:`scale_by_cooldown`,
  whose L is a runtime value in its state, compile to the same arithmetic
  and agree bit for bit under jit: 1 - p is no subtraction of a product
  (which XLA may fuse into one multiply-add, rounding once), and the
  reciprocal is not folded into the formula's other constants.
  """
  dtype = float_dtype()
  # Without the barrier XLA folds a constant reciprocal into products: c (x r) -> x (c r).
  reciprocal = jax.lax.optimization_barrier(1 / jnp.maximum(length, 1).astype(dtype))
  return offset.astype(dtype) * reciprocal, (length - offset).astype(dtype) * reciprocal


def warmup_curve(code: int, offset: jax.Array, length: jax.Array) -> jax.Array:
  """w(p): 0 at p = 0, 1 at p = 1, for the warmup shape ``code``."""
  p, rest = _fractions(offset, length)
  return [p, (1 - jnp.cos(jnp.pi * p)) / 2, 1 - jnp.sqrt(rest)][code]


def decay_curve(code: int | jax.Array, offset: jax.Array, length: jax.Array) -> jax.Array:
  """d(p): 1 at p = 0, 0 at p = 1, for the decay shape ``code`` (0 throughout for 'step')."""
  p, rest = _fractions(offset, length)
  curves = [
    lambda: rest,
    lambda: (1 + jnp.cos(jnp.pi * p)) / 2,
    lambda: 1 - jnp.sqrt(p),
    lambda: jnp.zeros_like(p),
  ]
  if isinstance(code, int):
    return curves[code]()
  values = [curve() for curve in curves]
  return jnp.select([code == i for i in range(len(values) - 1)], values[:-1], values[-1])


def check_end(end_value: Any, end_ratio: Any, decay_factor: Any, high: Any, high_name: str) -> None:
  """At most one of the three ways to give the end value e, each valid."""
  given = [n for n, v in [('end_value', end_value), ('end_ratio', end_ratio)] if v is not None]
  given += ['decay_factor'] if decay_factor is not None else []
  if len(given) > 1:
    raise ValueError(
      f'Pass at most one of end_value, end_ratio and decay_factor, got {" and ".join(given)}.'
    )
  if end_value is not None:
    check.check_non_negative('end_value', end_value)
    concrete = not (is_traced(end_value) or is_traced(high) or callable(high))
    if concrete and np.any(np.asarray(end_value) > np.asarray(high)):
      raise ValueError(f'end_value={end_value!r} must be <= {high_name}={high!r}.')
  if end_ratio is not None:
    check.check_non_negative('end_ratio', end_ratio)
    if not is_traced(end_ratio) and np.any(np.asarray(end_ratio) > 1):
      raise ValueError(f'end_ratio must be <= 1, got {end_ratio!r}.')
  if decay_factor is not None:
    check.check_decay_factor('decay_factor', decay_factor)


def end_of(high: jax.Array, end_value: Any, end_ratio: Any, decay_factor: Any) -> jax.Array:
  """The end value e for the value ``high`` it decays from (0 by default)."""
  if end_value is not None:
    return jnp.asarray(end_value, high.dtype)
  if end_ratio is not None:
    return high * jnp.asarray(end_ratio, high.dtype)
  if decay_factor is not None:
    return high / jnp.asarray(decay_factor, high.dtype)
  return jnp.zeros_like(high)


def decayed(
  high: jax.Array, factor: jax.Array, end_value: Any, end_ratio: Any, decay_factor: Any
) -> jax.Array:
  """e + (high - e) d: ``high`` at d = 1, the end value e at d = 0.

  With ``end_ratio`` r it is high (r + (1 - r) d), as in transformers: the
  product added to is then (1 - r) d, whose operands are the same in a
  schedule and in :func:`scale_by_cooldown`, so a fused multiply-add rounds
  the same in both.
  """
  if end_ratio is not None:
    ratio = jnp.asarray(end_ratio, high.dtype)
    return high * (ratio + (1 - ratio) * factor)
  if end_value is None and decay_factor is None:
    return high * factor
  end = end_of(high, end_value, end_ratio, decay_factor)
  return end + (high - end) * factor


_Lengths = tuple[Any, Any, Any]
"""The warmup, stable and decay lengths W, S, D (S and D None: the stable phase never ends)."""


def _phases(lengths: _Lengths, t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The phase of each count (0 warmup, 1 stable, 2 decay, 3 after), and the decay's offset."""
  warmup, stable, decay = lengths
  w = as_count_constant(warmup)
  after_warmup = jnp.where(t < w, 0, t - w).astype(t.dtype)
  if stable is None:
    return jnp.where(t < w, 0, 1).astype(t.dtype), jnp.zeros_like(t)
  s, d = as_count_constant(stable), as_count_constant(decay)
  offset = jnp.where(after_warmup < s, 0, after_warmup - s).astype(t.dtype)
  phase = jnp.where(t < w, 0, jnp.where(after_warmup < s, 1, jnp.where(offset < d, 2, 3)))
  return phase.astype(t.dtype), offset


def _value(
  c: dict[str, Any], lengths: _Lengths, codes: tuple[int, int], count: jax.typing.ArrayLike
) -> jax.Array:
  t = as_count(count)
  phase, offset = _phases(lengths, t)
  warmup = as_count_constant(lengths[0])
  decay = None if lengths[2] is None else as_count_constant(lengths[2])
  peak = jnp.asarray(c['peak_value'], float_dtype())
  start = jnp.asarray(c['init_value'], float_dtype())
  w_code, d_code = codes
  warm = start + (peak - start) * warmup_curve(w_code, jnp.minimum(t, warmup), warmup)
  # The decay starts from this runtime value, as scale_by_cooldown's does from its
  # schedule's: XLA then computes both the same way, bit for bit.
  value = jnp.where(phase == 0, warm, peak)
  if decay is not None:
    ends = c['end_value'], c['end_ratio'], c['decay_factor']
    end = end_of(peak, *ends)
    if c['decay_factor'] is not None:  # computed as multistep_decay_schedule computes a cut
      cut = (phase >= 2).astype(t.dtype)
      end = _tabulated(c['peak_value'], c['decay_factor'], 2)(cut)
    cooled = end
    if DECAY_SHAPES[d_code] != 'step':
      cooled = decayed(value, decay_curve(d_code, jnp.minimum(offset, decay), decay), *ends)
    value = jnp.where(phase == 2, cooled, jnp.where(phase == 3, end, value))
  return value


def _rows(
  value: Callable[[int], jax.Array], config: dict[str, Any], lengths: _Lengths, limit: int | None
) -> list[Stage]:
  """The stage table up to ``limit`` (exclusive; None: all): ramps with their shapes."""
  names = ('peak_value', 'init_value', 'end_value', 'end_ratio', 'decay_factor')
  values = [(n, config[n]) for n in names] + list(zip(_LENGTHS, lengths, strict=True))
  for name, v in values:
    if v is not None and (is_traced(v) or np.ndim(v) != 0):
      raise ValueError(f'{name}={v!r}: stage tables need concrete scalar hyperparameters.')
  warmup = int(lengths[0])
  shapes = config['warmup_shape'], config['decay_shape']
  # (start, end, ramp shape or None); ends None run forever.
  spans: list[tuple[int, int | None, str | None]] = [(0, warmup, shapes[0])]
  if lengths[1] is None:
    spans.append((warmup, None, None))
  else:
    cut = warmup + int(lengths[1])
    spans.append((warmup, cut, None))
    if shapes[1] == 'step':
      spans.append((cut, None, None))
    else:
      cooled = cut + int(lengths[2])
      spans += [(cut, cooled, shapes[1]), (cooled, None, None)]
  rows: list[Stage] = []
  for begin, stop, shape in spans:
    end = stop if limit is None else limit if stop is None else min(stop, limit)
    if begin == end or (limit is not None and begin >= limit):
      continue
    first = float(value(begin))
    if shape is None:
      if rows and rows[-1].ramp_to is None and rows[-1].value == first:
        rows[-1] = rows[-1]._replace(end=end)
        continue
      rows.append(Stage(begin, end, first))
    else:
      assert end is not None
      rows.append(Stage(begin, end, first, float(value(end))))
  return rows


def _length(name: str, steps: Any, fraction: Any, total: int | None) -> Any:
  """A phase length from steps or, with total_steps, a fraction of it; None if neither."""
  fraction_name = name.replace('_steps', '_fraction')
  if steps is not None and fraction is not None:
    raise ValueError(
      f'Pass at most one of {name} and {fraction_name}, got {name}={steps!r} and '
      f'{fraction_name}={fraction!r}.'
    )
  if fraction is not None:
    if total is None:
      raise ValueError(f'{fraction_name}={fraction!r} is a fraction of total_steps: pass it.')
    return steps_of(fraction_name, fraction, total)
  if steps is not None:
    check.check_integer(name, steps, minimum=0)
  return steps


@register
def wsd_schedule(
  peak_value: jax.typing.ArrayLike,
  *,
  warmup_steps: int | None = None,
  stable_steps: int | None = None,
  decay_steps: int | None = None,
  total_steps: int | None = None,
  warmup_fraction: float | None = None,
  decay_fraction: float | None = None,
  warmup_shape: str = 'linear',
  decay_shape: str = '1-sqrt',
  init_value: jax.typing.ArrayLike = 0.0,
  end_value: jax.typing.ArrayLike | None = None,
  end_ratio: jax.typing.ArrayLike | None = None,
  decay_factor: jax.typing.ArrayLike | None = None,
) -> StageSchedule:
  """Warmup-stable-decay (WSD): warm up, hold the peak, cool down at the end.

  With W, S, D the warmup, stable and decay lengths, η = ``peak_value``,
  v₀ = ``init_value`` and e the end value::

    η_t = v₀ + (η - v₀) w(t / W)          for t < W               warmup
          η                               for W ≤ t < W+S         stable
          e + (η - e) d((t - W - S) / D)  for W+S ≤ t < W+S+D     decay
          e                               for t ≥ W+S+D

    shape    warmup w(p)         decay d(p)
    linear   p                   1 - p
    cosine   (1 - cos πp) / 2    (1 + cos πp) / 2
    1-sqrt   1 - sqrt(1 - p)     1 - sqrt(p)
    step     -                   0: a single cut to e at t = W+S

  Each phase begins at its boundary count (the stable value applies at
  t = W, the decay formula at t = W+S, e at t = W+S+D); the first decay
  step still has the peak value, except with ``'step'``. Phases are found
  with integer arithmetic on the count, exact for int32, uint32 and (under
  x64) int64 counts; only the fraction p of a phase is a float. The end
  value e is ``end_value``, ``end_ratio`` * η or η / ``decay_factor`` (at
  most one; 0 by default). ``decay_shape='step'`` with ``decay_factor=α`` is
  the paper's step decay with one stage boundary at W+S, equal to
  ``multistep_decay_schedule(η, milestones=[W + S], decay_factor=α)`` when W = 0.

  Lengths come from ``stable_steps`` or from a budget ``total_steps`` T
  (S = T - W - D); without either the stable phase never ends (for
  :func:`scale_by_cooldown`). With T, the warmup and decay may be fractions
  of it, ``warmup_fraction`` and ``decay_fraction``: a fraction f is the
  step ⌊f T⌋, computed exactly on the host, a float read as the shortest
  decimal that rounds to it (0.29 of 100 steps is 29; ``int(0.29 * 100)``
  is 28); the stable phase gets the rest.

  transformers' ``get_wsd_schedule(optimizer, ...)``, whose multiplier of
  the optimizer's lr this times η equals (it computes in float64), maps as::

    lr of the optimizer     peak_value
    num_warmup_steps        warmup_steps
    num_stable_steps        stable_steps (both with total_steps: they use
                            num_stable_steps and warn; this refuses)
    num_decay_steps         decay_steps
    num_training_steps      total_steps
    warmup_type             warmup_shape (same names)
    decay_type              decay_shape (same names; their default is
                            'cosine', this one's '1-sqrt'; 'step' is extra)
    min_lr_ratio            end_ratio
    num_cycles              fixed at 0.5, their default
    warmup from min_lr_ratio * lr   warmup from init_value, 0 by default:
                            pass init_value=end_ratio * peak_value

  Their step t (``LambdaLR``'s count, 0 before the first
  ``scheduler.step()``) is this count t, 0 on the first update.

  Hyperparameters: ``peak_value``, ``init_value``, ``end_value``,
  ``end_ratio`` and ``decay_factor`` may be arrays or traced (under
  ``jax.vmap``), as may the integer ``warmup_steps``, ``stable_steps`` and
  ``decay_steps``; traced values are not checked, and stage tables need
  concrete scalars. :meth:`~StageSchedule.stage_index` gives the phase:
  0 warmup, 1 stable, 2 decay, 3 after the decay.

  Args:
    peak_value: η > 0, the stable value.
    warmup_steps: W ≥ 0 (default 0), exclusive with ``warmup_fraction``.
    stable_steps: S ≥ 0, exclusive with ``total_steps``.
    decay_steps: D ≥ 0, exclusive with ``decay_fraction``; needs
      ``stable_steps`` or ``total_steps``, and one of them needs it (or
      ``decay_fraction``).
    total_steps: the budget T ≥ W + D, a concrete integer.
    warmup_fraction: W as a fraction in [0, 1] of ``total_steps``.
    decay_fraction: D as a fraction in [0, 1] of ``total_steps``.
    warmup_shape: ``'linear'`` (default), ``'cosine'`` or ``'1-sqrt'``.
    decay_shape: ``'1-sqrt'`` (default, best in Hägele et al.), ``'linear'``,
      ``'cosine'`` or ``'step'``.
    init_value: v₀ ≥ 0, the value at count 0 when W > 0.
    end_value: e, in [0, η].
    end_ratio: e / η, in [0, 1] (transformers' ``min_lr_ratio``).
    decay_factor: η / e ≥ 1, the paper's α: the end value is the peak divided
      by it (transformers' ``min_lr_ratio``, like ``end_ratio``, multiplies:
      ``min_lr_ratio=0.1`` is ``decay_factor=10``).

  Returns:
    A :class:`StageSchedule` whose table shows the ramps with their shapes.
    Every phase boundary must be a count the schedule can evaluate.

  References:
    Hu et al., "MiniCPM: Unveiling the Potential of Small Language Models with
    Scalable Training Strategies" (2024), WSD: https://arxiv.org/abs/2404.06395.
    Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations" (2024), the 1-sqrt cooldown:
    https://arxiv.org/abs/2405.18392. transformers' ``get_wsd_schedule``:
    https://huggingface.co/docs/transformers/main_classes/optimizer_schedules

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.wsd_schedule(1.0, warmup_steps=2, total_steps=10, decay_fraction=0.4,
    ...                             decay_shape='linear')
    >>> [round(float(schedule(t)), 6) for t in range(11)]
    [0.0, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    >>> print(schedule.stage_table())
    stage         start           end  value
        0             0             2  0 -> 1 (linear)
        1             2             6  1
        2             6            10  1 -> 0 (linear)
        3            10             -  0
  """
  check.check_positive('peak_value', peak_value)
  check.check_non_negative('init_value', init_value)
  codes = (
    check_shape('warmup_shape', warmup_shape, WARMUP_SHAPES),
    check_shape('decay_shape', decay_shape, DECAY_SHAPES),
  )
  check_end(end_value, end_ratio, decay_factor, peak_value, 'peak_value')
  total = None if total_steps is None else check_total_steps(total_steps)
  if total is not None and stable_steps is not None:
    raise ValueError(
      f'Pass at most one of stable_steps and total_steps, got stable_steps={stable_steps!r} '
      f'and total_steps={total_steps!r}: the stable phase is T - W - D.'
    )
  warmup = _length('warmup_steps', warmup_steps, warmup_fraction, total)
  warmup = 0 if warmup is None else warmup
  decay = _length('decay_steps', decay_steps, decay_fraction, total)
  stable: Any = stable_steps
  if stable is None and total is None:
    if decay is not None:
      raise ValueError(
        f'decay_steps={decay!r} needs stable_steps or total_steps: without them the stable '
        'phase never ends (start a cooldown on demand with scale_by_cooldown instead).'
      )
  else:
    if decay is None:
      given = f'stable_steps={stable!r}' if stable is not None else f'total_steps={total_steps!r}'
      raise ValueError(f'{given} needs decay_steps or decay_fraction: the length of the decay.')
    if stable is not None:
      check.check_integer('stable_steps', stable, minimum=0)
    elif not (is_traced(warmup) or is_traced(decay)):
      rest = total - np.asarray(warmup, np.int64) - np.asarray(decay, np.int64)  # type: ignore[operator]
      if np.any(rest < 0):
        raise ValueError(
          f'total_steps={total_steps!r} is shorter than the warmup ({warmup}) and decay '
          f'({decay}) together: warmup_steps + decay_steps must be <= total_steps.'
        )
      stable = rest.item() if rest.ndim == 0 else rest
    else:
      stable = total - warmup - decay  # type: ignore[operator]
  if total is not None:
    check.check_reachable('total_steps', total)
  elif not any(is_traced(v) for v in (warmup, stable)):
    _check_reachable(warmup, stable, decay)
  config = dict(
    peak_value=peak_value,
    warmup_steps=warmup_steps,
    stable_steps=stable_steps,
    decay_steps=decay_steps,
    total_steps=total_steps,
    warmup_fraction=warmup_fraction,
    decay_fraction=decay_fraction,
    warmup_shape=warmup_shape,
    decay_shape=decay_shape,
    init_value=init_value,
    end_value=end_value,
    end_ratio=end_ratio,
    decay_factor=decay_factor,
  )
  lengths = (warmup, stable, decay)
  value = functools.partial(_value, config, lengths, codes)
  rows = functools.partial(_rows, value, config, lengths)
  return StageSchedule(
    'wsd_schedule',
    config,
    value_fn=value,
    index_fn=lambda t: _phases(lengths, t)[0],
    points_fn=lambda limit: [row.start for row in rows(limit)[1:]],
    num_stages=2 if stable is None else 4,
    table_fn=rows,
    ramp_shape_fn=lambda row: warmup_shape if row.start < int(warmup) else decay_shape,
  )


def _check_reachable(warmup: Any, stable: Any, decay: Any) -> None:
  """Every phase boundary W, W+S, W+S+D must be a count schedules evaluate."""
  boundary = 0
  ends = ('the end of the warmup', 'the start of the decay', 'the end of the decay')
  for name, length, what in zip(_LENGTHS, (warmup, stable, decay), ends, strict=True):
    if length is None or is_traced(length):
      return
    boundary += int(np.max(np.asarray(length, dtype=object)))
    check.check_reachable(name, length, boundary, what)

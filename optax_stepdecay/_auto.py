"""Step decay that cuts when the iterates stop moving away from the last restart point."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_float
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import new_count
from optax_stepdecay._counts import scale_updates
from optax_stepdecay._counts import statistics_dtype


class AutoStepDecayState(NamedTuple):
  """State of :func:`auto_step_decay`.

  Attributes:
    count: updates applied so far.
    learning_rate: the step size of the most recent update (before any: the
      first update's).
    stage: the index of the current stage, i.e. the number of cuts so far;
      the next update uses ``init_value / decay_factor**stage``.
    stage_step: updates applied since the last restart (the last cut, or
      ``init``): the n of the distance Ω_n.
    next_check: the ``stage_step`` at which the next check happens.
    last_check: the ``stage_step`` of the stage's latest check (0 before it).
    distance: Ω at the stage's latest check, ‖x - r‖² (0 before it).
    last_cut: ``count`` after the latest cut (0 before the first): the
      fallback cuts once ``count`` reaches ``fallback_growth`` times it.
    reference: the restart point r: the parameters given to ``init``, then the
      iterate after each cut.
    num_nonfinite: checks whose distance was not finite (a NaN or inf
      gradient, or an overflow); never reset.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  next_check: jax.Array
  last_check: jax.Array
  distance: jax.Array
  last_cut: jax.Array
  reference: optax.Params
  num_nonfinite: jax.Array


def next_check_after(n: jax.Array, growth: jax.Array) -> jax.Array:
  """The check after the one at ``n`` updates: ``max(n + 1, ceil(growth * n))``, int32.

  ``growth * n`` is computed in the step size's float dtype; the ``n + 1``
  keeps the grid strictly increasing however it rounds, and the result
  saturates at 2^31 - 1 like optax's counts.
  """
  limit = np.iinfo(np.int32).max
  scaled = jnp.ceil(growth * n.astype(growth.dtype))
  scaled = jnp.where(scaled >= limit, limit, scaled).astype(jnp.int32)
  return jnp.maximum(optax.safe_increment(n), scaled)


def is_stalled(
  distance: jax.Array,
  previous: jax.Array,
  n: jax.Array,
  previous_n: jax.Array,
  threshold: jax.Array,
) -> jax.Array:
  """Whether the log-log slope of Ω between two checks is below ``threshold``.

  The slope (log Ω_n - log Ω_m) / (log n - log m) < s is tested as
  Ω_n < Ω_m (n / m)^s, without logarithms, so a distance of 0 (no movement)
  never passes. False before the stage's first check (m = 0).
  """
  dtype = distance.dtype
  ratio = n.astype(dtype) / jnp.maximum(previous_n, 1).astype(dtype)
  bound = previous * ratio ** threshold.astype(dtype)
  return (previous_n > 0) & (distance < bound)


def _check_fallback_growth(value: object) -> None:
  """Q > 1, or inf for no fallback (None is turned into inf before)."""
  if is_traced(value) or check.is_positive_infinity(value):
    return
  check.check_finite('fallback_growth', value)
  if not cast(Any, value) > 1:
    raise ValueError(f'fallback_growth must be > 1 or None, got {value!r}.')


def auto_step_decay(
  init_value: float,
  *,
  decay_factor: float = 2.0,
  first_check: int = 64,
  check_growth: float = 1.5,
  slope_threshold: float = 0.3,
  min_growth: float = 1.5,
  fallback_growth: float | None = 2.0,
  min_value: float = 0.0,
) -> optax.GradientTransformation:
  """Step decay whose cuts come when the iterates stop moving away from the last restart.

  Scales updates by -η_t like ``optax.scale_by_learning_rate`` and divides η
  by ``decay_factor`` when a distance diagnostic (Pesme, Dieuleveut and
  Flammarion, 2020) says SGD has stopped making progress at this step size.
  Place it last in the chain (after momentum, weight decay, clipping): it
  sees the final update and the parameters x_t.

  From the restart point r (the parameters given to ``init``, then the
  iterate after each cut) it watches the squared distance
  Ω_n = ‖x_n - r‖² after n updates. While SGD still travels towards the
  minimiser, Ω grows like n²; once the iterates only fluctuate around it,
  Ω stops growing. Ω is computed only at checks on a geometric grid,
  n_0 = ``first_check``, n_(k+1) = max(n_k + 1, ⌈q n_k⌉) with q =
  ``check_growth``, and at each check after the first the step is cut when
  the log-log slope is below s = ``slope_threshold``::

    (log Ω_(n_k) - log Ω_(n_(k-1))) / (log n_k - log n_(k-1)) < s

  A cut divides η by α = ``decay_factor``, makes the new iterate the restart
  point and starts the grid again; no cut comes before the count has grown by
  a factor ``min_growth`` since the latest one. After each cut the stage lasts about
  twice as long as the one before (the time to equilibrate doubles when η
  halves), so the cut times follow the 1/t decay that strongly convex
  problems want, with the constant found from the problem instead of a
  horizon. A fallback also cuts when no cut came while the count
  grew by a factor Q = ``fallback_growth`` since the latest cut (never before
  the first cut, which sets the time scale): under drift (weight decay that
  keeps the weights moving) the diagnostic may never fire.

  Cost: between checks an update costs what ``optax.scale_by_learning_rate``
  costs plus a comparison of counts; a check is one pass over the parameters,
  the update and r (in a ``lax.cond``), and there are O(log t) of them.
  Memory: one copy of the parameters (r).

  Dtypes: the step size is float32 (float64 under ``jax_enable_x64``), like
  every schedule value; Ω in the parameters' dtype promoted to at least
  float32. Updates and r keep the parameters' dtype; Ω is measured at the
  iterate as that dtype rounds it.

  Non-finite values: a check whose Ω is not finite (a NaN or inf gradient, or
  an overflow) is skipped, counted in ``num_nonfinite``, and never cuts; the
  next check compares with the latest finite one. The non-finite update is
  still returned: to skip such updates, wrap the chain in
  ``optax.apply_if_finite``.

  Hyperparameters: concrete values are checked when the transformation is
  built; all may also be traced scalars, for a sweep under ``jax.vmap`` (build
  the transformation inside the vmapped function) or under
  ``optax.inject_hyperparams`` (``fallback_growth`` then as a number, inf for
  none); traced values are not checked.

  Args:
    init_value: η₀ > 0, a scalar.
    decay_factor: α ≥ 1: each cut divides the step by it (torch's ``gamma``
      and optax's ``decay_rate`` multiply: ``gamma=0.5`` is ``decay_factor=2``).
    first_check: updates after a restart before its first check, ≥ 1 and at
      most 2^31 - 1. The first slope, hence the earliest cut, is at the
      second check, ⌈q n_0⌉ updates after the restart (n_0 = ``first_check``).
    check_growth: q > 1, the ratio of consecutive checks.
    slope_threshold: s, the log-log slope of Ω below which the step is cut
      (2 while SGD travels in a straight line, 1 for a random walk, 0 at
      equilibrium).
    min_growth: ≥ 1, the least growth of the count between two cuts.
    fallback_growth: Q > 1, or None (or inf) for no fallback.
    min_value: floor on the step size, in ``[0, init_value]``.

  Returns:
    An ``optax.GradientTransformation`` with an :class:`AutoStepDecayState`;
    ``update`` needs ``params``.

  References:
    Pesme, Dieuleveut and Flammarion, "On Convergence-Diagnostic based Step Sizes
    for Stochastic Gradient Descent", ICML 2020: https://arxiv.org/abs/2007.00534

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.auto_step_decay(0.1)
    >>> state = tx.init(jnp.zeros(3))
    >>> int(state.stage), float(osd.current_learning_rate(state))
    (0, 0.10000000149011612)
  """
  if fallback_growth is None:
    fallback_growth = np.inf
  for name, value in [
    ('init_value', init_value),
    ('decay_factor', decay_factor),
    ('check_growth', check_growth),
    ('slope_threshold', slope_threshold),
    ('min_growth', min_growth),
    ('fallback_growth', fallback_growth),
    ('min_value', min_value),
  ]:
    check.check_scalar(name, value)
  check.check_positive('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_count('first_check', first_check, minimum=1)
  check.check_finite('check_growth', check_growth)
  if not is_traced(check_growth) and not check_growth > 1:
    raise ValueError(f'check_growth must be > 1, got {check_growth!r}.')
  check.check_finite('slope_threshold', slope_threshold)
  check.check_finite('min_growth', min_growth)
  if not is_traced(min_growth) and not min_growth >= 1:
    raise ValueError(f'min_growth must be >= 1, got {min_growth!r}.')
  _check_fallback_growth(fallback_growth)
  check.check_non_negative('min_value', min_value)
  if not (is_traced(min_value) or is_traced(init_value)) and min_value > init_value:
    raise ValueError(
      f'min_value={min_value!r} must be <= init_value={init_value!r}: it is a floor on the step.'
    )
  init_value, decay_factor, check_growth, slope_threshold = map(  # type: ignore[assignment]
    as_float, (init_value, decay_factor, check_growth, slope_threshold)
  )
  min_growth, fallback_growth, min_value = map(  # type: ignore[assignment]
    as_float, (min_growth, fallback_growth, min_value)
  )

  def init_fn(params: optax.Params) -> AutoStepDecayState:
    return AutoStepDecayState(
      count=new_count(),
      learning_rate=jnp.array(init_value, float_dtype()),
      stage=new_count(),
      stage_step=new_count(),
      next_check=jnp.asarray(first_check, jnp.int32),
      last_check=new_count(),
      distance=jnp.zeros([], statistics_dtype(params)),
      last_cut=new_count(),
      reference=jax.tree.map(jnp.copy, params),
      num_nonfinite=new_count(),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('auto_step_decay needs params: update(updates, state, params).')
    rate_dtype, dtype = state.learning_rate.dtype, state.distance.dtype
    divisor = jnp.asarray(decay_factor, rate_dtype) ** state.stage
    floor = jnp.asarray(min_value, rate_dtype)
    lr = jnp.maximum(jnp.asarray(init_value, rate_dtype) / divisor, floor).astype(rate_dtype)

    def scaled(directions: optax.Updates) -> optax.Updates:
      return scale_updates(-lr, directions)

    directions, updates = updates, scaled(updates)
    count = optax.safe_increment(state.count)
    stage_step = optax.safe_increment(state.stage_step)
    growth = jnp.asarray(check_growth, rate_dtype)
    # The fallback compares counts in the step size's float dtype: Q t_cut needs no integer Q.
    grown = count.astype(rate_dtype) / jnp.maximum(state.last_cut, 1).astype(rate_dtype)
    fallback = (state.last_cut > 0) & (grown >= jnp.asarray(fallback_growth, rate_dtype))
    allowed = (state.last_cut == 0) | (grown >= jnp.asarray(min_growth, rate_dtype))
    state = state._replace(count=count, learning_rate=lr, stage_step=stage_step)

    def check_or_cut(state: AutoStepDecayState) -> AutoStepDecayState:
      # Scales the directions itself, so that the updates are not an operand of the cond.
      iterate = jax.tree.map(
        lambda x, u, r: (x + u).astype(r.dtype), params, scaled(directions), state.reference
      )
      terms = jax.tree.map(
        lambda x, r: jnp.sum(jnp.square(x.astype(dtype) - r.astype(dtype))),
        iterate,
        state.reference,
      )
      distance = jnp.asarray(optax.tree.sum(terms), dtype)
      finite = jnp.isfinite(distance)
      checked = stage_step >= state.next_check
      stalled = is_stalled(
        distance,
        state.distance,
        stage_step,
        state.last_check,
        jnp.asarray(slope_threshold, rate_dtype),
      )
      # No cut on a non-finite iterate: the next stage would measure from it.
      cut = finite & ((checked & stalled & allowed) | fallback)
      recorded = checked & finite
      return state._replace(
        stage=state.stage + cut,
        stage_step=jnp.where(cut, 0, stage_step),
        next_check=jnp.where(
          cut,
          jnp.asarray(first_check, jnp.int32),
          jnp.where(checked, next_check_after(stage_step, growth), state.next_check),
        ),
        last_check=jnp.where(cut, 0, jnp.where(recorded, stage_step, state.last_check)),
        distance=jnp.where(cut, 0.0, jnp.where(recorded, distance, state.distance)).astype(dtype),
        last_cut=jnp.where(cut, count, state.last_cut),
        reference=jax.lax.cond(cut, lambda: iterate, lambda: state.reference),
        num_nonfinite=jnp.where(
          checked & ~finite, optax.safe_increment(state.num_nonfinite), state.num_nonfinite
        ),
      )

    # Everything else happens at checks only, O(log t) of them.
    due = (stage_step >= state.next_check) | fallback
    new_state = jax.lax.cond(due, check_or_cut, lambda state: state, state)
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)

"""Step decay that cuts when a statistical test says SGD has reached stationarity."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import ndtri

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
    stage_step: updates applied in the current stage.
    reference: the point c distances are measured from: zeros in the
      first stage, the stage's first iterate afterwards.
    batch_start: the iterate the current batch started from (the parameters
      given to ``init``, then the iterate after each batch's last update).
    running: the stage's running sums of the statistic z (up to the latest
      batch end) and of the scale v (up to the latest update).
    history: ring buffer of ``running`` at the end of each of the stage's
      batches, batch ``k`` in slot ``k % max_batches``.
    num_batches: batches completed in the stage.
    num_nonfinite: updates whose statistic was not finite (a NaN or inf
      gradient, or an overflow), left out of ``running``; never reset.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  reference: optax.Params
  batch_start: optax.Params
  running: jax.Array
  history: jax.Array
  num_batches: jax.Array
  num_nonfinite: jax.Array


MIN_WINDOW = 4  # batch ends in the test window
DEFAULT_MAX_BATCHES = 1024
# Every update scans the whole buffer, and the buffer is part of the state:
# 65,536 batch ends (512 KiB) is far more than any stage needs.
MAX_BATCHES = 2**16


class StationarityTerms(NamedTuple):
  """The parts of one stationarity test (see :func:`stationarity_terms`)."""

  window: jax.Array  # batch ends in the window
  change: jax.Array  # the window's sum of z: the change of s = ‖x - c‖² across it
  half_width: jax.Array  # of the interval of the change
  bound: jax.Array  # tolerance times the window's sum of v = ‖u‖²


def stationarity_terms(
  history: jax.Array, num_batches: jax.Array, confidence: float, tolerance: float
) -> StationarityTerms:
  """The equivalence test's terms on the latest three quarters of the stage's batches.

  ``history`` holds, at the end of each batch, the stage's running sums of z
  and v. The window's sum of z telescopes: it is the change ``D`` of
  s = ‖x - c‖² from the window's first batch end to its last. At
  stationarity the variance of that change is at most twice the variance of
  s, estimated from the window's batch ends, so the interval of
  ``D`` is ``D +- q * sqrt(2 var(s))`` (``q`` the two-sided normal quantile
  of ``confidence``). Batch means of z would not do: consecutive ones
  share an end point, and their variance overstates the mean's by up to the
  number of batches.
  """
  capacity = history.shape[0]
  window = jnp.minimum(num_batches - num_batches // 4, capacity)
  age = (num_batches - 1 - jnp.arange(capacity)) % capacity  # 0 for the newest batch
  in_window = age < window
  newest, oldest = history[(num_batches - 1) % capacity], history[(num_batches - window) % capacity]
  change, scale = newest - oldest
  dtype = history.dtype
  n = jnp.maximum(window, 2).astype(dtype)
  s = history[:, 0]
  mean = jnp.sum(jnp.where(in_window, s, 0.0)) / n
  variance = jnp.sum(jnp.where(in_window, (s - mean) ** 2, 0.0)) / (n - 1)
  quantile = ndtri(0.5 + jnp.asarray(confidence, dtype) / 2)
  return StationarityTerms(
    window, change, quantile * jnp.sqrt(2 * variance), jnp.asarray(tolerance, dtype) * scale
  )


def stationarity_test(
  history: jax.Array, num_batches: jax.Array, confidence: float, tolerance: float
) -> jax.Array:
  """Whether the interval of the window's change lies within +-tolerance times its sum of v.

  Needs four batch ends in the window; the terms are :func:`stationarity_terms`'.
  """
  terms = stationarity_terms(history, num_batches, confidence, tolerance)
  return (terms.window >= MIN_WINDOW) & (jnp.abs(terms.change) + terms.half_width < terms.bound)


def close_batch(
  params: optax.Params,
  updates: optax.Updates,
  start: optax.Params,
  reference: optax.Params,
  dtype: np.dtype,
) -> tuple[optax.Params, jax.Array]:
  """The next batch's start, and this batch's sum of z: ‖e - c‖² - ‖b - c‖².

  e = x + u is the batch's end, b its start. The change is computed as
  ⟨e - b, (e - c) + (b - c)⟩, differences first, so it is as accurate as its
  own size however far x and c lie from 0. A non-finite change leaves the
  batch open (the next batch starts at b), so the next batch end closes both.
  """
  end = jax.tree.map(lambda x, u, b: (x + u).astype(b.dtype), params, updates, start)
  terms = jax.tree.map(
    lambda e, b, c: jnp.sum((e - b) * ((e - c) + (b - c))),
    *(optax.tree.cast(t, dtype) for t in (end, start, reference)),
  )
  change = jnp.asarray(optax.tree.sum(terms), dtype)
  return jax.lax.cond(jnp.isfinite(change), lambda: end, lambda: start), change


def auto_step_decay(
  init_value: float,
  *,
  decay_factor: float = 10.0,
  test_interval: int,
  min_stage_length: int,
  confidence: float = 0.95,
  tolerance: float = 0.5,
  min_value: float = 0.0,
  max_batches: int | None = None,
) -> optax.GradientTransformation:
  """Step decay whose cuts are triggered by a test of stationarity (SASA+).

  Scales updates by -η_t like ``optax.scale_by_learning_rate`` and divides η
  by ``decay_factor`` when the iterates look stationary. Place it last in the
  chain (after momentum, weight decay, clipping): it sees the final update
  u_t = -η_t d_t and the parameters x_t, and tests the relation that holds,
  for any fixed point c, when the distribution of x_t is stationary::

    E[‖x_(t+1) - c‖² - ‖x_t - c‖²] = E[2⟨x_t - c, u_t⟩ + ‖u_t‖²] = 0

  With c = 0 and plain SGD this is Lang, Xiao and Zhang's (2019) relation
  E⟨x, g⟩ = (η/2) E‖g‖²; with heavy-ball momentum β it is Yaida's (2019)
  E⟨x, g⟩ = (η/2)(1 + β) E‖d‖².
  The first stage measures from c = 0; every later stage from its
  first iterate, which the test found stationary at the previous step size
  and so lies near the minimiser: the statistic's noise then scales with the
  spread of the iterates instead of with ‖x*‖.

  The statistic z_t = 2⟨x_t - c, u_t⟩ + ‖u_t‖²
  and the scale v_t = ‖u_t‖² are summed over the stage and
  recorded every ``test_interval`` updates (a batch). After each batch, once
  the stage is ``min_stage_length`` updates old, the window of the latest
  three quarters of the stage's batches (the first quarter is burn-in) is
  declared stationary when the ``confidence`` interval of the window's sum
  of z lies within ±δ times its sum of v
  (an equivalence test, as in SASA+: a short or noisy window gives a wide
  interval and no cut). The sum of z telescopes to the change of
  ‖x - c‖² over the window, whose variance at stationarity is at
  most twice that of ‖x - c‖² at the window's batch ends; the
  interval uses that bound. A cut resets the statistics.

  Cost: v_t is summed at every update, as η_t² ‖d_t‖² over the incoming
  directions d_t (one pass over them); z's sum over a batch is computed only
  at the batch's end e, where it telescopes to ‖e - c‖² - ‖b - c‖² from
  the batch's start b (one pass over x, u, b and c, in a ``lax.cond``). Both
  equal the per-update sums up to float rounding; the telescoped form sees the
  iterate as the parameters' dtype rounds it. Memory: two copies of the
  parameters (c and b) and ``max_batches`` pairs of scalars.

  Dtypes: the step size is float32 (float64 under ``jax_enable_x64``), like
  every schedule value; the sums of z and v accumulate in the parameters'
  dtype promoted to at least float32 (float32 for bfloat16 parameters,
  float64 for float64 ones). Updates, c and b keep the parameters' dtype.

  Non-finite values: an update whose statistic is not finite (a NaN or inf
  gradient, or directions so large that ‖d‖² overflows) is left out of
  the sums and counted in ``num_nonfinite``, and never triggers a cut, so one
  bad batch does not stop the test for good (a batch whose end is not finite
  stays open until a finite batch end closes it). Its (non-finite) update is
  still returned: to skip such updates, and keep this state untouched,
  wrap the chain in ``optax.apply_if_finite``::

    tx = optax.apply_if_finite(
      optax.chain(optax.trace(0.9), osd.auto_step_decay(0.1, decay_factor=10.0, test_interval=100,
                                                        min_stage_length=1000)),
      max_consecutive_errors=5,
    )

  Hyperparameters: concrete values are checked when the transformation is
  built. ``init_value``, ``decay_factor``, ``confidence``, ``tolerance``,
  ``min_value``, ``test_interval`` and ``min_stage_length`` may also be
  traced scalars, for a sweep under ``jax.vmap`` (build the transformation
  inside the vmapped function) or under ``optax.inject_hyperparams``; traced
  values are not checked. ``max_batches`` sets the shape of the state and
  must be concrete.

  Args:
    init_value: η₀ > 0, a scalar.
    decay_factor: α ≥ 1, the paper's decay factor: the step is divided by it
      at each cut (torch's ``gamma`` and optax's ``decay_rate`` multiply:
      ``gamma=0.1`` is ``decay_factor=10``).
    test_interval: updates per batch, and between tests, ≥ 1. A
      stage lasts at least five batches (four batch ends in the window).
    min_stage_length: updates before the first test of a stage,
      ≥ 2 ``test_interval`` and at most 2^31 - 1 (the
      stage's step counter is int32, like optax's counts).
    confidence: level of the interval, in (0, 1).
    tolerance: δ > 0; the stage is stationary when the interval
      of the mean of z lies within ±δ times the mean
      of ‖u‖² (a relative imbalance below δ).
    min_value: floor on the step size, in ``[0, init_value]``.
    max_batches: capacity of the buffer of batch ends; the test window is at
      most this many batches. None (the default) means 1024; at most 65,536,
      because the buffer is part of the optimizer state and every update
      scans all of it.

  Returns:
    An ``optax.GradientTransformation`` with an :class:`AutoStepDecayState`;
    ``update`` needs ``params``.

  References:
    Lang, Xiao and Zhang, "Using Statistics to Automate Stochastic Optimization",
    NeurIPS 2019 (SASA+): https://arxiv.org/abs/1909.09785.
    Yaida, "Fluctuation-dissipation relations for stochastic gradient descent",
    ICLR 2019: https://arxiv.org/abs/1810.00004

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.auto_step_decay(0.1, test_interval=10, min_stage_length=100)
    >>> state = tx.init(jnp.zeros(3))
    >>> int(state.stage), float(osd.current_learning_rate(state))
    (0, 0.10000000149011612)
  """
  for name, value in [
    ('init_value', init_value),
    ('decay_factor', decay_factor),
    ('confidence', confidence),
    ('tolerance', tolerance),
    ('min_value', min_value),
  ]:
    check.check_scalar(name, value)
  # Step sizes are computed in float_dtype(); confidence and tolerance in the statistics'
  # dtype, which is float32 at least.
  f32 = np.float32
  check.check_positive('init_value', init_value)
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_count('test_interval', test_interval, minimum=1)
  check.check_count('min_stage_length', min_stage_length, minimum=2 * test_interval)
  if max_batches is None:
    max_batches = DEFAULT_MAX_BATCHES
  check.check_integer(
    'max_batches',
    max_batches,
    minimum=MIN_WINDOW,
    maximum=MAX_BATCHES,
    why='the buffer of batch ends is part of the optimizer state and every update scans it',
  )
  check.check_finite('confidence', confidence, f32)
  if not is_traced(confidence) and not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence!r}.')
  check.check_non_negative('min_value', min_value)
  if not (is_traced(min_value) or is_traced(init_value)) and min_value > init_value:
    raise ValueError(
      f'min_value={min_value!r} must be <= init_value={init_value!r}: it is a floor on the step.'
    )
  check.check_positive('tolerance', tolerance, f32)
  init_value, decay_factor, confidence, tolerance, min_value = map(  # type: ignore[assignment]
    as_float, (init_value, decay_factor, confidence, tolerance, min_value)
  )

  def init_fn(params: optax.Params) -> AutoStepDecayState:
    if is_traced(max_batches):
      raise ValueError(
        'max_batches sets the shape of the state and must be concrete, not traced (under '
        "optax.inject_hyperparams leave it out or list 'max_batches' in static_args)."
      )
    dtype = statistics_dtype(params)
    return AutoStepDecayState(
      count=new_count(),
      learning_rate=jnp.array(init_value, float_dtype()),
      stage=new_count(),
      stage_step=new_count(),
      reference=optax.tree.zeros_like(params),
      batch_start=jax.tree.map(jnp.copy, params),
      running=jnp.zeros([2], dtype),
      history=jnp.zeros([int(max_batches), 2], dtype),
      num_batches=new_count(),
      num_nonfinite=new_count(),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('auto_step_decay needs params: update(updates, state, params).')
    # Dtypes from the state: the step size's is float_dtype(), the statistics' that of the
    # parameters promoted to at least float32.
    rate_dtype, dtype = state.learning_rate.dtype, state.running.dtype
    divisor = jnp.asarray(decay_factor, rate_dtype) ** state.stage
    floor = jnp.asarray(min_value, rate_dtype)
    lr = jnp.maximum(jnp.asarray(init_value, rate_dtype) / divisor, floor).astype(rate_dtype)

    def scaled(directions: optax.Updates) -> optax.Updates:
      return scale_updates(-lr, directions)

    directions, updates = updates, scaled(updates)
    # ‖u‖² as η²‖d‖²: summing the directions, which are already in memory, spares writing
    # the updates out before optax.apply_updates adds them.
    scale = lr.astype(dtype) ** 2 * jnp.asarray(
      optax.tree.sum(jax.tree.map(jnp.square, optax.tree.cast(directions, dtype))), dtype
    )
    # A NaN or inf gradient (or an overflow) would poison the stage's sums for good: skip it.
    finite = jnp.isfinite(scale)
    state = state._replace(
      count=optax.safe_increment(state.count),
      learning_rate=lr,
      stage_step=optax.safe_increment(state.stage_step),
      running=state.running.at[1].add(jnp.where(finite, scale, 0.0)),
      num_nonfinite=jnp.where(
        finite, state.num_nonfinite, optax.safe_increment(state.num_nonfinite)
      ),
    )

    def end_batch(state: AutoStepDecayState) -> AutoStepDecayState:
      # Scales the directions itself, so that the updates are not an operand of the cond.
      start, change = close_batch(
        params, scaled(directions), state.batch_start, state.reference, dtype
      )
      closed = jnp.isfinite(change)
      running = state.running.at[0].add(jnp.where(closed, change, 0.0))
      history = state.history.at[state.num_batches % state.history.shape[0]].set(running)
      num_batches = state.num_batches + 1
      stationary = stationarity_test(history, num_batches, confidence, tolerance)
      # No cut on a non-finite update: the next stage would measure from a non-finite point.
      cut = (state.stage_step >= min_stage_length) & stationary & finite & closed
      return state._replace(
        stage=state.stage + cut,
        stage_step=jnp.where(cut, 0, state.stage_step),
        reference=jax.lax.cond(cut, lambda: start, lambda: state.reference),
        batch_start=start,
        running=jnp.where(cut, jnp.zeros_like(running), running),
        history=history,
        num_batches=jnp.where(cut, 0, num_batches),
        num_nonfinite=jnp.where(
          finite & ~closed, optax.safe_increment(state.num_nonfinite), state.num_nonfinite
        ),
      )

    # Everything else happens at batch ends only: z's sum over a batch telescopes.
    batch_done = state.stage_step % test_interval == 0
    new_state = jax.lax.cond(batch_done, end_batch, lambda state: state, state)
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)

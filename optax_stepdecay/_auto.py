"""Step decay that cuts when a statistical test says SGD has reached stationarity."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.scipy.special import ndtri

from optax_stepdecay import _validation as check


class AutoStepDecayState(NamedTuple):
  """State of :func:`auto_step_decay`.

  Attributes:
    count: updates applied so far.
    learning_rate: the step size of the most recent update (before any: the
      first update's).
    stage: the index of the current stage, i.e. the number of cuts so far;
      the next update uses ``init_value / decay_factor**stage``.
    stage_step: updates applied in the current stage.
    reference: the point :math:`c` distances are measured from: zeros in the
      first stage, the stage's first iterate afterwards.
    running: the stage's running sums of the statistic z and the scale v.
    history: ring buffer of ``running`` at the end of each of the stage's
      batches, batch ``k`` in slot ``k % max_batches``.
    num_batches: batches completed in the stage.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  reference: optax.Params
  running: jax.Array
  history: jax.Array
  num_batches: jax.Array


MIN_WINDOW = 4  # batch ends in the test window


def stationarity_test(
  history: jax.Array, num_batches: jax.Array, confidence: float, tolerance: float
) -> jax.Array:
  r"""The equivalence test on the latest three quarters of the stage's batches.

  ``history`` holds, at the end of each batch, the stage's running sums of z
  and v. The window's sum of z telescopes: it is the change ``D`` of
  :math:`s = \|x - c\|^2` from the window's first batch end to its last. At
  stationarity the variance of that change is at most twice the variance of
  :math:`s`, estimated from the window's batch ends, so the interval of
  ``D`` is ``D +- q * sqrt(2 var(s))`` (``q`` the two-sided normal quantile
  of ``confidence``); it must lie inside ``+-tolerance * V``, ``V`` the sum of
  v over the same updates. Batch means of z would not do: consecutive ones
  share an end point, and their variance overstates the mean's by up to the
  number of batches. Needs four batch ends in the window.
  """
  capacity = history.shape[0]
  window = jnp.minimum(num_batches - num_batches // 4, capacity)
  age = (num_batches - 1 - jnp.arange(capacity)) % capacity  # 0 for the newest batch
  in_window = age < window
  newest, oldest = history[(num_batches - 1) % capacity], history[(num_batches - window) % capacity]
  change, scale = newest - oldest
  n = jnp.maximum(window, 2).astype(jnp.float32)
  s = history[:, 0]
  mean = jnp.sum(jnp.where(in_window, s, 0.0)) / n
  variance = jnp.sum(jnp.where(in_window, (s - mean) ** 2, 0.0)) / (n - 1)
  half_width = ndtri(0.5 + confidence / 2) * jnp.sqrt(2 * variance)
  return (window >= MIN_WINDOW) & (jnp.abs(change) + half_width < tolerance * scale)


def auto_step_decay(
  init_value: float,
  decay_factor: float = 10.0,
  *,
  test_interval: int,
  min_stage_length: int,
  confidence: float = 0.95,
  tolerance: float = 0.5,
  min_value: float = 0.0,
  max_batches: int = 1024,
) -> optax.GradientTransformation:
  r"""Step decay whose cuts are triggered by a test of stationarity (SASA+).

  Scales updates by :math:`-\eta_t` like ``optax.scale_by_learning_rate``
  and divides :math:`\eta` by ``decay_factor`` when the iterates look
  stationary. Place it last in the chain (after momentum, weight decay,
  clipping): it sees the final update :math:`u_t = -\eta_t d_t` and the
  parameters :math:`x_t`, and tests the relation that holds, for any fixed
  point :math:`c`, when the distribution of :math:`x_t` is stationary,

  .. math::
    \mathbb{E}\left[\|x_{t+1} - c\|^2 - \|x_t - c\|^2\right]
    = \mathbb{E}\left[2\langle x_t - c, u_t\rangle + \|u_t\|^2\right] = 0 .

  With :math:`c = 0` and plain SGD this is Lang, Xiao and Zhang's (2019)
  relation :math:`\mathbb{E}\langle x, g\rangle = \frac{\eta}{2}\mathbb{E}\|g\|^2`;
  with heavy-ball momentum :math:`\beta` it is Yaida's (2019)
  :math:`\mathbb{E}\langle x, g\rangle = \frac{\eta}{2}(1+\beta)\,\mathbb{E}\|d\|^2`.
  The first stage measures from :math:`c = 0`; every later stage from its
  first iterate, which the test found stationary at the previous step size
  and so lies near the minimiser: the statistic's noise then scales with the
  spread of the iterates instead of with :math:`\|x^\star\|`.

  The statistic :math:`z_t = 2\langle x_t - c, u_t\rangle + \|u_t\|^2`
  and the scale :math:`v_t = \|u_t\|^2` are summed over the stage and
  recorded every ``test_interval`` updates (a batch). After each batch, once
  the stage is ``min_stage_length`` updates old, the window of the latest
  three quarters of the stage's batches (the first quarter is burn-in) is
  declared stationary when the ``confidence`` interval of the window's sum
  of :math:`z` lies within :math:`\pm\delta` times its sum of :math:`v`
  (an equivalence test, as in SASA+: a short or noisy window gives a wide
  interval and no cut). The sum of :math:`z` telescopes to the change of
  :math:`\|x - c\|^2` over the window, whose variance at stationarity is at
  most twice that of :math:`\|x - c\|^2` at the window's batch ends; the
  interval uses that bound. Memory: one copy of the parameters (:math:`c`)
  and ``max_batches`` pairs of scalars; one pass over the parameters per
  update. A cut resets the statistics.

  Args:
    init_value: :math:`\eta_0`.
    decay_factor: :math:`\alpha \ge 1`, the divisor at each cut.
    test_interval: updates per batch, and between tests, :math:`\ge 1`. A
      stage lasts at least five batches (four batch ends in the window).
    min_stage_length: updates before the first test of a stage,
      :math:`\ge 2` ``test_interval``.
    confidence: level of the interval, in (0, 1).
    tolerance: :math:`\delta > 0`; the stage is stationary when the interval
      of the mean of :math:`z` lies within :math:`\pm\delta` times the mean
      of :math:`\|u\|^2` (a relative imbalance below :math:`\delta`).
    min_value: floor on the step size.
    max_batches: capacity of the buffer of batch ends; the test window is at
      most this many batches.

  Returns:
    An ``optax.GradientTransformation`` with an :class:`AutoStepDecayState`;
    ``update`` needs ``params``.

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.auto_step_decay(0.1, test_interval=10, min_stage_length=100)
    >>> state = tx.init(jnp.zeros(3))
    >>> int(state.stage), float(osd.current_learning_rate(state))
    (0, 0.10000000149011612)
  """
  check.check_finite('init_value', init_value)
  if init_value <= 0:
    raise ValueError(f'init_value must be > 0, got {init_value!r}.')
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_integer('test_interval', test_interval, minimum=1)
  check.check_integer('min_stage_length', min_stage_length, minimum=2 * test_interval)
  check.check_integer('max_batches', max_batches, minimum=MIN_WINDOW)
  check.check_finite('confidence', confidence)
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence!r}.')
  check.check_non_negative('min_value', min_value)
  check.check_finite('tolerance', tolerance)
  if tolerance <= 0:
    raise ValueError(f'tolerance must be > 0, got {tolerance!r}.')

  def init_fn(params: optax.Params) -> AutoStepDecayState:
    zero = jnp.zeros([], jnp.int32)
    return AutoStepDecayState(
      count=zero,
      learning_rate=jnp.asarray(init_value, jnp.float32),
      stage=zero,
      stage_step=zero,
      reference=optax.tree.zeros_like(params),
      running=jnp.zeros([2]),
      history=jnp.zeros([max_batches, 2]),
      num_batches=zero,
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('auto_step_decay needs params: update(updates, state, params).')
    lr = jnp.maximum(init_value / jnp.float32(decay_factor) ** state.stage, min_value)
    updates = jax.tree.map(lambda d: (-lr * d).astype(d.dtype), updates)
    leaves = zip(*(jax.tree.leaves(t) for t in (params, updates, state.reference)), strict=True)
    inner, scale = jnp.zeros([]), jnp.zeros([])
    for x, u, c in leaves:
      step = u.astype(jnp.float32)
      inner += jnp.vdot(x.astype(jnp.float32) - c.astype(jnp.float32), step)
      scale += jnp.vdot(step, step)
    stage_step = state.stage_step + 1
    running = state.running + jnp.stack([2 * inner + scale, scale])
    batch_done = stage_step % test_interval == 0

    slot = state.num_batches % max_batches
    history = jnp.where(batch_done, state.history.at[slot].set(running), state.history)
    num_batches = state.num_batches + batch_done
    stationary = stationarity_test(history, num_batches, confidence, tolerance)
    cut = batch_done & (stage_step >= min_stage_length) & stationary

    next_iterate = jax.tree.map(lambda x, u: x + u, params, updates)
    new_state = AutoStepDecayState(
      count=optax.safe_increment(state.count),
      learning_rate=lr,
      stage=state.stage + cut,
      stage_step=jnp.where(cut, 0, stage_step),
      reference=optax.tree.where(cut, next_iterate, state.reference),
      running=jnp.where(cut, jnp.zeros(2), running),
      history=history,
      num_batches=jnp.where(cut, 0, num_batches),
    )
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)

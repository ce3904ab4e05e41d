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
    batch_sum: sums of the statistic z and the scale v over the unfinished
      batch.
    batch_means: ring buffer of the stage's batch means of z and v.
    num_batches: batches completed in the stage.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array
  stage: jax.Array
  stage_step: jax.Array
  batch_sum: jax.Array
  batch_means: jax.Array
  num_batches: jax.Array


def stationarity_test(
  batch_means: jax.Array, num_batches: jax.Array, confidence: float, tolerance: float
) -> jax.Array:
  """The equivalence test on the latest half of the stage's batches.

  ``batch_means`` is a ring buffer of shape (capacity, 2): the batch means of
  the statistic z and of the scale v, batch ``k`` in slot ``k % capacity``.
  With the window's ``n`` means of z, of mean ``m`` and sample variance
  ``s**2``, the interval ``m +- q * s / sqrt(n)`` (``q`` the two-sided normal
  quantile of ``confidence``) must lie inside ``(-tolerance * v, tolerance *
  v)``, ``v`` the window's mean scale: a short or noisy window gives a wide
  interval and no cut. Needs two batches in the window.
  """
  capacity = batch_means.shape[0]
  window = jnp.minimum((num_batches + 1) // 2, capacity)
  age = (num_batches - 1 - jnp.arange(capacity)) % capacity  # 0 for the newest batch
  weights = (age < window).astype(jnp.float32)
  n = jnp.maximum(window.astype(jnp.float32), 1.0)
  z, v = batch_means[:, 0], batch_means[:, 1]
  mean = jnp.sum(weights * z) / n
  variance = jnp.sum(weights * (z - mean) ** 2) / jnp.maximum(n - 1, 1.0)
  half_width = ndtri(0.5 + confidence / 2) * jnp.sqrt(variance / n)
  bound = tolerance * jnp.sum(weights * v) / n
  return (window >= 2) & (jnp.abs(mean) + half_width < bound)


def auto_step_decay(
  init_value: float,
  decay_factor: float = 10.0,
  *,
  test_interval: int,
  min_stage_length: int,
  confidence: float = 0.95,
  tolerance: float = 0.2,
  min_value: float = 0.0,
  max_batches: int = 1024,
) -> optax.GradientTransformation:
  r"""Step decay whose cuts are triggered by a test of stationarity (SASA+).

  Scales updates by :math:`-\eta_t` like ``optax.scale_by_learning_rate``
  and divides :math:`\eta` by ``decay_factor`` when the iterates look
  stationary. Place it last in the chain (after momentum, weight decay,
  clipping): it sees the final update :math:`u_t = -\eta_t d_t` and the
  parameters :math:`x_t`, and tests the relation that holds when the
  distribution of :math:`x_t` is stationary,

  .. math::
    \mathbb{E}\left[\|x_{t+1}\|^2 - \|x_t\|^2\right]
    = \mathbb{E}\left[2\langle x_t, u_t\rangle + \|u_t\|^2\right] = 0 .

  For plain SGD this is Lang, Xiao and Zhang's (2019) relation
  :math:`\mathbb{E}\langle x, g\rangle = \frac{\eta}{2}\mathbb{E}\|g\|^2`; with
  heavy-ball momentum :math:`\beta` it is Yaida's (2019)
  :math:`\mathbb{E}\langle x, g\rangle = \frac{\eta}{2}(1+\beta)\,\mathbb{E}\|d\|^2`.
  The statistic :math:`z_t = 2\langle x_t, u_t\rangle + \|u_t\|^2` is
  averaged over batches of ``test_interval`` updates; after each batch, once
  the stage is ``min_stage_length`` updates old, the stage is declared
  stationary when the ``confidence`` interval of the mean of :math:`z`
  (batch-means variance, normal quantile) lies within
  :math:`\pm\delta\,\overline{\|u\|^2}` (an equivalence test, as in SASA+: a
  short or noisy window gives a wide interval and no cut). The test window is
  the latest half of the stage's batches (SASA+'s burn-in), kept as scalars
  in a buffer of ``max_batches``: O(1) memory, one pass over the parameters
  per update. A cut resets the statistics.

  Args:
    init_value: :math:`\eta_0`.
    decay_factor: :math:`\alpha \ge 1`, the divisor at each cut.
    test_interval: updates per batch, and between tests, :math:`\ge 1`. With
      momentum :math:`\beta` consecutive updates are correlated: use batches
      much longer than :math:`1 / (1 - \beta)` (say 100 for 0.9).
    min_stage_length: updates before the first test of a stage,
      :math:`\ge 2` ``test_interval``.
    confidence: level of the interval, in (0, 1).
    tolerance: :math:`\delta > 0`; the stage is stationary when the interval
      of the mean of :math:`z` lies within :math:`\pm\delta` times the mean
      of :math:`\|u\|^2` (a relative imbalance below :math:`\delta`).
    min_value: floor on the step size.
    max_batches: capacity of the buffer of batch means; the test window is
      the latest half of the stage's batches, at most this many.

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
  check.check_integer('max_batches', max_batches, minimum=2)
  check.check_finite('confidence', confidence)
  if not 0 < confidence < 1:
    raise ValueError(f'confidence must be in (0, 1), got {confidence!r}.')
  check.check_non_negative('min_value', min_value)
  check.check_finite('tolerance', tolerance)
  if tolerance <= 0:
    raise ValueError(f'tolerance must be > 0, got {tolerance!r}.')

  def init_fn(params: optax.Params) -> AutoStepDecayState:
    del params
    zero = jnp.zeros([], jnp.int32)
    return AutoStepDecayState(
      count=zero,
      learning_rate=jnp.asarray(init_value, jnp.float32),
      stage=zero,
      stage_step=zero,
      batch_sum=jnp.zeros([2]),
      batch_means=jnp.zeros([max_batches, 2]),
      num_batches=zero,
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('auto_step_decay needs params: update(updates, state, params).')
    lr = jnp.maximum(init_value / jnp.float32(decay_factor) ** state.stage, min_value)
    updates = jax.tree.map(lambda d: (-lr * d).astype(d.dtype), updates)
    pairs = list(zip(jax.tree.leaves(params), jax.tree.leaves(updates), strict=True))
    inner = sum(jnp.vdot(x.astype(jnp.float32), u.astype(jnp.float32)) for x, u in pairs)
    scale = sum(jnp.sum(jnp.square(u.astype(jnp.float32))) for _, u in pairs)
    stage_step = state.stage_step + 1
    batch_sum = state.batch_sum + jnp.stack([2 * inner + scale, scale])
    batch_done = stage_step % test_interval == 0

    slot = state.num_batches % max_batches
    batch_means = jnp.where(
      batch_done, state.batch_means.at[slot].set(batch_sum / test_interval), state.batch_means
    )
    num_batches = state.num_batches + batch_done
    stationary = stationarity_test(batch_means, num_batches, confidence, tolerance)
    cut = batch_done & (stage_step >= min_stage_length) & stationary

    new_state = AutoStepDecayState(
      count=optax.safe_increment(state.count),
      learning_rate=lr,
      stage=state.stage + cut,
      stage_step=jnp.where(cut, 0, stage_step),
      batch_sum=jnp.where(batch_done, jnp.zeros(2), batch_sum),
      batch_means=batch_means,
      num_batches=jnp.where(cut, 0, num_batches),
    )
    return updates, new_state

  return optax.GradientTransformation(init_fn, update_fn)

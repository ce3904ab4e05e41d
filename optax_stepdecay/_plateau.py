"""Cut the step size when a metric stops improving, as torch's ReduceLROnPlateau does."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_stepdecay import _validation as check


class ReduceOnPlateauState(NamedTuple):
  """State of :func:`reduce_on_plateau`.

  Attributes:
    scale: the factor updates are multiplied by (1 until the first cut).
    best_value: the best metric evaluated so far (+inf / -inf before any).
    plateau_count: consecutive evaluations without improvement.
    cooldown_count: evaluations left in the cooldown after a cut.
    count: calls accumulated towards the next evaluation.
    accumulated_value: sum of the metrics of those calls.
    num_cuts: cuts so far.
  """

  scale: jax.Array
  best_value: jax.Array
  plateau_count: jax.Array
  cooldown_count: jax.Array
  count: jax.Array  # type: ignore[assignment]  # optax names it so
  accumulated_value: jax.Array
  num_cuts: jax.Array


def reduce_on_plateau(
  decay_factor: float = 10.0,
  patience: int = 10,
  mode: str = 'min',
  threshold: float = 1e-4,
  threshold_mode: str = 'rel',
  cooldown: int = 0,
  min_scale: float = 0.0,
  accumulation_size: int = 1,
) -> optax.GradientTransformationExtraArgs:
  r"""Divides updates by ``decay_factor`` when a metric stops improving.

  Call ``update(updates, state, params, value=metric)``. Every
  ``accumulation_size`` calls the mean of their metrics :math:`m` is
  evaluated, exactly as ``torch.optim.lr_scheduler.ReduceLROnPlateau.step(m)``:

  * :math:`m` improves on the best :math:`b` when
    :math:`m < b - \tau|b|` (mode ``'min'``, ``threshold_mode='rel'``),
    :math:`m < b - \tau` (``'abs'``), or the mirror images in mode ``'max'``;
  * an improvement resets the count of bad evaluations, anything else
    increments it; during the ``cooldown`` evaluations after a cut bad
    evaluations are not counted;
  * when the count exceeds ``patience`` (``patience + 1`` consecutive bad
    evaluations) the scale becomes :math:`\max(s / \alpha, s_{\min})` and the
    cooldown starts.

  The one difference from torch: the relative threshold uses :math:`|b|`, so
  negative metrics (log-likelihoods, ELBOs) improve and plateau as positive
  ones do (torch's ``b (1 - \tau)`` moves the bar the wrong way for
  :math:`b < 0`). The updates of a call are multiplied by the scale in
  effect *after* its metric is evaluated. Chained after any optimizer, the
  scale multiplies its step size (and :func:`current_learning_rate` includes
  it).

  Args:
    decay_factor: :math:`\alpha \ge 1`, the divisor at each cut (torch's
      ``factor=0.1`` is ``decay_factor=10``).
    patience: bad evaluations tolerated before a cut, :math:`\ge 0`.
    mode: ``'min'`` (lower is better) or ``'max'``.
    threshold: :math:`\tau \ge 0`, the least change that counts as improvement.
    threshold_mode: ``'rel'`` or ``'abs'``.
    cooldown: evaluations after a cut during which bad ones are not counted.
    min_scale: floor on the scale, in ``[0, 1]``.
    accumulation_size: calls whose metrics are averaged into one evaluation.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with a
    :class:`ReduceOnPlateauState`.

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.reduce_on_plateau(decay_factor=2.0, patience=1)
    >>> state = tx.init(jnp.zeros(1))
    >>> for metric in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]:
    ...   updates, state = tx.update(jnp.ones(1), state, value=metric)
    >>> updates, int(state.num_cuts)
    (Array([0.25], dtype=float32), 2)
  """
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_integer('patience', patience, minimum=0)
  if mode not in ('min', 'max'):
    raise ValueError(f"mode must be 'min' or 'max', got {mode!r}.")
  check.check_non_negative('threshold', threshold)
  if threshold_mode not in ('rel', 'abs'):
    raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}.")
  check.check_integer('cooldown', cooldown, minimum=0)
  check.check_non_negative('min_scale', min_scale)
  if min_scale > 1:
    raise ValueError(f'min_scale must be <= 1, got {min_scale!r}.')
  check.check_integer('accumulation_size', accumulation_size, minimum=1)
  sign = 1.0 if mode == 'min' else -1.0  # compare in 'min' form: lower is better

  def init_fn(params: optax.Params) -> ReduceOnPlateauState:
    del params
    zero = jnp.zeros([], jnp.int32)
    return ReduceOnPlateauState(
      scale=jnp.ones([], jnp.float32),
      best_value=jnp.asarray(jnp.inf, jnp.float32),
      plateau_count=zero,
      cooldown_count=zero,
      count=zero,
      accumulated_value=jnp.zeros([], jnp.float32),
      num_cuts=zero,
    )

  def improves(value: jax.Array, best: jax.Array) -> jax.Array:
    margin = threshold * jnp.abs(best) if threshold_mode == 'rel' else threshold
    # Before the first evaluation best is +inf and inf - inf is NaN: any finite value improves.
    return jnp.where(jnp.isinf(best), value < best, value < best - margin)

  def evaluate(state: ReduceOnPlateauState, value: jax.Array) -> ReduceOnPlateauState:
    better = improves(value, state.best_value)
    best = jnp.where(better, value, state.best_value)
    bad = jnp.where(better, 0, state.plateau_count + 1)
    in_cooldown = state.cooldown_count > 0
    cooldown_left = jnp.where(in_cooldown, state.cooldown_count - 1, 0)
    bad = jnp.where(in_cooldown, 0, bad)
    cut = bad > patience
    new_scale = jnp.maximum(state.scale / decay_factor, min_scale).astype(jnp.float32)
    return state._replace(
      scale=jnp.where(cut, new_scale, state.scale),
      best_value=best,
      plateau_count=jnp.where(cut, 0, bad),
      cooldown_count=jnp.where(cut, cooldown, cooldown_left),
      num_cuts=state.num_cuts + (cut & (new_scale < state.scale)),
    )

  def update_fn(updates, state, params=None, *, value: Any = None, **extra_args):
    del params, extra_args
    if value is None:
      raise ValueError('reduce_on_plateau needs the metric: update(..., value=metric).')
    total = state.accumulated_value + sign * jnp.asarray(value, jnp.float32)
    count = state.count + 1
    ready = count >= accumulation_size
    evaluated = evaluate(state, total / count)
    state = jax.tree.map(lambda a, b: jnp.where(ready, a, b), evaluated, state)
    state = state._replace(
      count=jnp.where(ready, 0, count), accumulated_value=jnp.where(ready, 0.0, total)
    )
    updates = jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates)
    return updates, state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)

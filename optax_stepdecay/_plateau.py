"""Cut the step size when a metric stops improving, as torch's ReduceLROnPlateau does."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_float
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import new_count
from optax_stepdecay._counts import scale_updates


class ReduceOnPlateauState(NamedTuple):
  """State of :func:`reduce_on_plateau`.

  Attributes:
    scale: the factor updates are multiplied by (1 until the first cut).
    best_value: the best metric evaluated so far (+inf / -inf before any).
    plateau_count: consecutive evaluations without improvement.
    cooldown_count: evaluations left in the cooldown after a cut.
    count: calls accumulated towards the next evaluation.
    accumulated_value: sum of the metrics of those calls (of the finite ones
      with ``nonfinite='ignore'``).
    num_cuts: cuts so far.
    accumulated_finite: how many of those calls had a finite metric.
    num_nonfinite: non-finite metrics received so far; never reset.
  """

  scale: jax.Array
  best_value: jax.Array
  plateau_count: jax.Array
  cooldown_count: jax.Array
  count: jax.Array  # type: ignore[assignment]  # optax names it so
  accumulated_value: jax.Array
  num_cuts: jax.Array
  accumulated_finite: jax.Array
  num_nonfinite: jax.Array


_NONFINITE = ('ignore', 'bad')


def _init(params: optax.Params) -> ReduceOnPlateauState:
  """The state before any metric."""
  del params
  dtype = float_dtype()  # no parameters to follow: the dtype of step sizes
  return ReduceOnPlateauState(
    scale=jnp.ones([], dtype),
    best_value=jnp.asarray(jnp.inf, dtype),
    plateau_count=new_count(),
    cooldown_count=new_count(),
    count=new_count(),
    accumulated_value=jnp.zeros([], dtype),
    num_cuts=new_count(),
    accumulated_finite=new_count(),
    num_nonfinite=new_count(),
  )


def _evaluate(
  state: ReduceOnPlateauState,
  value: jax.Array,
  threshold: jax.typing.ArrayLike,
  threshold_mode: str,
  patience: jax.typing.ArrayLike,
  cooldown: jax.typing.ArrayLike,
  decay_factor: jax.typing.ArrayLike,
  min_scale: jax.typing.ArrayLike,
) -> ReduceOnPlateauState:
  """One evaluation of the mean metric ``value`` (in 'min' form), as torch's ``step``."""
  best = state.best_value
  tau = jnp.asarray(threshold, best.dtype)
  margin = tau * jnp.abs(best) if threshold_mode == 'rel' else tau
  # Before the first evaluation best is +inf and inf - inf is NaN: any finite value improves.
  improves = jnp.where(jnp.isinf(best), value < best, value < best - margin)
  # A non-finite mean (only with nonfinite='bad') is never an improvement.
  better = improves & jnp.isfinite(value)
  bad = jnp.where(better, 0, state.plateau_count + 1)
  in_cooldown = state.cooldown_count > 0
  cooldown_left = jnp.where(in_cooldown, state.cooldown_count - 1, 0)
  bad = jnp.where(in_cooldown, 0, bad)
  cut = bad > patience
  dtype = state.scale.dtype
  divisor, floor = jnp.asarray(decay_factor, dtype), jnp.asarray(min_scale, dtype)
  new_scale = jnp.maximum(state.scale / divisor, floor).astype(dtype)
  return state._replace(
    scale=jnp.where(cut, new_scale, state.scale),
    best_value=jnp.where(better, value, best),
    plateau_count=jnp.where(cut, 0, bad),
    cooldown_count=jnp.where(cut, cooldown, cooldown_left).astype(jnp.int32),
    num_cuts=state.num_cuts + (cut & (new_scale < state.scale)),
  )


def _check_choice(name: str, value: object, choices: tuple[str, str]) -> None:
  if value not in choices:
    raise ValueError(f'{name} must be {choices[0]!r} or {choices[1]!r}, got {value!r}.')


def reduce_on_plateau(
  decay_factor: float = 10.0,
  *,
  patience: int = 10,
  mode: str = 'min',
  threshold: float = 1e-4,
  threshold_mode: str = 'rel',
  cooldown: int = 0,
  min_scale: float = 0.0,
  accumulation_size: int = 1,
  nonfinite: str = 'ignore',
) -> optax.GradientTransformationExtraArgs:
  """Divides updates by ``decay_factor`` when a metric stops improving.

  Not ``optax.contrib.reduce_on_plateau``, though it shares the name: this
  one behaves as torch's ``ReduceLROnPlateau``. For the same settings,
  optax's (as of optax 0.2.8) multiplies by ``factor`` (``factor=0.1`` is
  ``decay_factor=10`` here); cuts one evaluation earlier (after ``patience``
  bad evaluations, not ``patience + 1``); with ``patience=0`` cuts on every
  improvement and at most once on a flat metric; counts a flat negative
  metric as improving, so it never cuts on one; and has no ``mode='max'``.
  The states differ too (:class:`ReduceOnPlateauState` here,
  ``ReduceLROnPlateauState`` there): one cannot be restored as the other.

  Call ``update(updates, state, params, value=metric)``. Every
  ``accumulation_size`` calls the mean of their metrics m is
  evaluated, exactly as ``torch.optim.lr_scheduler.ReduceLROnPlateau.step(m)``:

  * m improves on the best b when
    m < b - τ abs(b) (mode ``'min'``, ``threshold_mode='rel'``),
    m < b - τ (``'abs'``), or the mirror images in mode ``'max'``;
  * an improvement resets the count of bad evaluations, anything else
    increments it; during the ``cooldown`` evaluations after a cut bad
    evaluations are not counted;
  * when the count exceeds ``patience`` (``patience + 1`` consecutive bad
    evaluations) the scale becomes max(s / α, s_min) and the
    cooldown starts.

  The one difference from torch: the relative threshold uses abs(b), so
  negative metrics (log-likelihoods, ELBOs) improve and plateau as positive
  ones do (torch's ``b * (1 - threshold)`` moves the bar the wrong way for
  b < 0). The updates of a call are multiplied by the scale in
  effect *after* its metric is evaluated. Chained after any optimizer, the
  scale multiplies its step size (and :func:`current_learning_rate` includes
  it).

  The state's floats (scale, best and accumulated metric) are float32, or
  float64 under ``jax_enable_x64``, the dtype of schedule values: the
  transformation sees no parameters. Updates keep their dtype.

  Non-finite metrics (NaN, +inf, -inf; ``optax.apply_if_finite`` does not
  look at ``value``) follow ``nonfinite``: ``'ignore'`` (the default) leaves
  them out of the mean, and an evaluation whose metrics are all non-finite
  does not happen (no bad evaluation, no cooldown step); ``'bad'`` makes any
  evaluation that includes one a bad evaluation that never becomes the best,
  as torch counts a NaN metric. Both count them in ``num_nonfinite``.

  Hyperparameters: concrete values are checked when the transformation is
  built. The numeric ones (``decay_factor``, ``patience``, ``threshold``,
  ``cooldown``, ``min_scale``, ``accumulation_size``) may also be traced
  scalars, under ``jax.vmap`` or ``optax.inject_hyperparams``; traced values
  are not checked.

  Args:
    decay_factor: α ≥ 1: the step is divided by it at each cut (torch's and
      ``optax.contrib.reduce_on_plateau``'s ``factor`` multiply: ``factor=0.1``
      is ``decay_factor=10``).
    patience: bad evaluations tolerated before a cut, ≥ 0 and below
      2^31 - 1 (they are counted in int32).
    mode: ``'min'`` (lower is better) or ``'max'``.
    threshold: τ ≥ 0, the least change that counts as improvement.
    threshold_mode: ``'rel'`` or ``'abs'``.
    cooldown: evaluations after a cut during which bad ones are not counted.
    min_scale: floor on the scale, in ``[0, 1]``.
    accumulation_size: calls whose metrics are averaged into one evaluation.
    nonfinite: ``'ignore'`` (default) or ``'bad'``: what a non-finite metric
      does, see above.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with a
    :class:`ReduceOnPlateauState`.

  References:
    torch's ``ReduceLROnPlateau``:
    https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.ReduceLROnPlateau.html

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.reduce_on_plateau(decay_factor=2.0, patience=1)
    >>> state = tx.init(jnp.zeros(1))
    >>> for metric in [3.0, 2.0, 2.0, 2.0, 2.0, 2.0]:
    ...   updates, state = tx.update(jnp.ones(1), state, value=metric)
    >>> updates, int(state.num_cuts)
    (Array([0.25], dtype=float32), 2)
  """
  check.check_scalar('decay_factor', decay_factor)
  check.check_scalar('threshold', threshold)
  check.check_scalar('min_scale', min_scale)
  check.check_decay_factor('decay_factor', decay_factor)
  check.check_integer(
    'patience',
    patience,
    minimum=0,
    maximum=check.INT32_MAX - 1,
    why='a cut needs patience + 1 bad evaluations, counted in int32',
  )
  _check_choice('mode', mode, ('min', 'max'))
  check.check_non_negative('threshold', threshold)
  _check_choice('threshold_mode', threshold_mode, ('rel', 'abs'))
  check.check_count('cooldown', cooldown, minimum=0)
  check.check_non_negative('min_scale', min_scale)
  if not is_traced(min_scale) and min_scale > 1:
    raise ValueError(f'min_scale must be <= 1, got {min_scale!r}.')
  check.check_count('accumulation_size', accumulation_size, minimum=1)
  _check_choice('nonfinite', nonfinite, _NONFINITE)
  decay_factor, threshold, min_scale = map(  # type: ignore[assignment]
    as_float, (decay_factor, threshold, min_scale)
  )
  sign = 1.0 if mode == 'min' else -1.0  # compare in 'min' form: lower is better

  def update_fn(updates, state, params=None, *, value: Any = None, **extra_args):
    del params, extra_args
    if value is None:
      raise ValueError('reduce_on_plateau needs the metric: update(..., value=metric).')
    if jnp.ndim(value) != 0:
      raise ValueError(f'value must be a scalar metric, got shape {jnp.shape(value)}.')
    metric = sign * jnp.asarray(value, state.best_value.dtype)
    finite = jnp.isfinite(metric)
    if nonfinite == 'ignore':
      metric = jnp.where(finite, metric, 0.0)
    total = state.accumulated_value + metric
    num_finite = state.accumulated_finite + finite
    count = state.count + 1
    ready = count >= accumulation_size
    # 'ignore' averages the finite metrics and skips an evaluation that has none;
    # 'bad' averages all of them, so one non-finite metric makes the evaluation bad.
    if nonfinite == 'ignore':
      ready_to_evaluate = ready & (num_finite > 0)
      mean = total / jnp.maximum(num_finite, 1)
    else:
      ready_to_evaluate = ready
      mean = total / count
    evaluated = _evaluate(
      state, mean, threshold, threshold_mode, patience, cooldown, decay_factor, min_scale
    )
    state = jax.tree.map(lambda a, b: jnp.where(ready_to_evaluate, a, b), evaluated, state)
    state = state._replace(
      count=jnp.where(ready, 0, count),
      accumulated_value=jnp.where(ready, 0.0, total),
      accumulated_finite=jnp.where(ready, 0, num_finite),
      num_nonfinite=jnp.where(
        finite, state.num_nonfinite, optax.safe_increment(state.num_nonfinite)
      ),
    )
    return scale_updates(state.scale, updates), state

  return optax.GradientTransformationExtraArgs(_init, update_fn)

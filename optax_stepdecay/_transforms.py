"""Optax gradient transformations: a step size you can read back, and SGD with step decay."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_stepdecay import _state as states
from optax_stepdecay import _validation as check
from optax_stepdecay._auto import AutoStepDecayState
from optax_stepdecay._cooldown import CooldownState
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import new_count
from optax_stepdecay._counts import scale_updates
from optax_stepdecay._plateau import ReduceOnPlateauState
from optax_stepdecay._schedules import fixed_horizon_step_decay_schedule
from optax_stepdecay._schedules import step_decay_schedule
from optax_stepdecay._stage_schedule import check_learning_rate


class TrackedLearningRateState(NamedTuple):
  """State of :func:`scale_by_tracked_learning_rate`.

  Attributes:
    count: number of updates applied so far (int32, saturating, as in optax).
    learning_rate: the step size of the most recent update; before the first
      update, the one the first update will use.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array


def scale_by_tracked_learning_rate(
  learning_rate: optax.ScalarOrSchedule, *, flip_sign: bool = True
) -> optax.GradientTransformation:
  """Scales updates by a step size and keeps that step size in the state.

  Like ``optax.scale_by_learning_rate``, u_t = -η_t g_t with
  η_t = ``learning_rate(t)`` and t = the number of
  earlier updates (0 on the first), but the state also holds
  η_t, so :func:`current_learning_rate` can read it for logging
  without ``optax.inject_hyperparams``.

  Args:
    learning_rate: a float > 0 or an optax schedule. The count it is
      evaluated at is int32 and stops at 2^31 - 1, as optax's
      counts do: a schedule of this package with stage boundaries beyond
      that is refused.
    flip_sign: negate the updates (descent), as optax does by default.

  Returns:
    An ``optax.GradientTransformation`` with a :class:`TrackedLearningRateState`.

  References:
    ``optax.scale_by_learning_rate``, which it replaces:
    https://optax.readthedocs.io

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1)
    >>> tx = osd.scale_by_tracked_learning_rate(schedule)
    >>> state = tx.init(jnp.zeros(2))
    >>> updates, state = tx.update(jnp.ones(2), state)
    >>> updates, state = tx.update(jnp.ones(2), state)
    >>> updates, float(osd.current_learning_rate(state))
    (Array([-0.5, -0.5], dtype=float32), 0.5)
  """
  check_learning_rate(learning_rate)
  sign = -1.0 if flip_sign else 1.0

  def rate(count: jax.Array) -> jax.Array:
    value = learning_rate(count) if callable(learning_rate) else learning_rate
    return jnp.asarray(value, dtype=float_dtype())

  def init_fn(params: optax.Params) -> TrackedLearningRateState:
    del params
    count = new_count()
    # A copy: a constant learning rate given as an array must not share its buffer.
    return TrackedLearningRateState(count=count, learning_rate=jnp.array(rate(count)))

  def update_fn(updates, state, params=None):
    del params
    step_size = rate(state.count)
    updates = scale_updates(sign * step_size, updates)
    return updates, TrackedLearningRateState(optax.safe_increment(state.count), step_size)

  return optax.GradientTransformation(init_fn, update_fn)


_RATE_STATES = (TrackedLearningRateState, AutoStepDecayState, CooldownState)


def current_learning_rate(opt_state: Any) -> jax.Array | dict[str, jax.Array]:
  """The step size of the most recent update, read from an optimizer state.

  Finds the first :class:`TrackedLearningRateState`,
  :class:`AutoStepDecayState` or :class:`CooldownState` (or, failing that, the first
  ``optax.inject_hyperparams`` state with a ``learning_rate``) in any nesting
  of optax states: ``optax.chain``, ``optax.MultiSteps``,
  ``optax.multi_transform`` or a Flax ``nnx.Optimizer``'s ``opt_state``; and
  multiplies it by the scale of every :func:`reduce_on_plateau` state that
  applies to the same parameters.

  Parameter groups: when the step sizes are in the groups of an
  ``optax.multi_transform``, the answer is a dictionary with one entry per
  group that has a step size, keyed by the group's label (nested groups'
  labels joined by ``'/'``); a plateau's scale counts in its own group only
  (in every group when it is chained outside the ``multi_transform``). A step
  size inside an ``optax.masked`` applies to some parameters only: it is
  refused, with the place to read it from.

  Args:
    opt_state: an optimizer state.

  Returns:
    The learning rate, a float scalar array (jittable), or with parameter
    groups a dictionary ``{label: learning rate}``.

  Raises:
    ValueError: the state holds no learning rate, holds one inside an
      ``optax.masked``, or holds some inside parameter groups and some
      outside.

  References:
    The states it reads: :func:`scale_by_tracked_learning_rate`,
    :func:`auto_step_decay`, :func:`scale_by_cooldown`, :func:`reduce_on_plateau` and
    ``optax.inject_hyperparams`` (https://optax.readthedocs.io).

  Example:
    >>> import jax.numpy as jnp, optax, optax_stepdecay as osd
    >>> tx = optax.multi_transform(
    ...   {'body': osd.step_decay_sgd(0.1, decay_factor=10.0, stage_length=100),
    ...    'head': osd.step_decay_sgd(0.01, decay_factor=10.0, stage_length=100)},
    ...   {'w': 'body', 'out': 'head'},
    ... )
    >>> rates = osd.current_learning_rate(tx.init({'w': jnp.ones(3), 'out': jnp.ones(2)}))
    >>> {label: round(float(rate), 4) for label, rate in rates.items()}
    {'body': 0.1, 'head': 0.01}
  """
  # Our states first, also inside inject_hyperparams (auto_step_decay's rate is not a
  # hyperparameter); then inject_hyperparams states that hold a learning_rate.
  ours, injected = states.fields_and_hyperparameters(opt_state, 'learning_rate', _RATE_STATES)
  rates = ours + injected
  if not rates:
    raise ValueError(
      'opt_state holds no learning rate: build the optimizer with '
      'scale_by_tracked_learning_rate (step_decay_sgd does), auto_step_decay '
      'or optax.inject_hyperparams.'
    )
  plateaus = states.locate(opt_state, [ReduceOnPlateauState])
  states.check_unmasked(rates + plateaus, 'a learning rate')
  groups = states.by_group(rates)
  if () in groups and len(groups) > 1:
    raise ValueError(
      'opt_state holds learning rates both outside parameter groups (at '
      f'{states.where(groups[()][0])}) and inside the optax.multi_transform groups '
      f'{sorted(states.label(g) for g in groups if g)}: read the part you mean, such as '
      'the multi_transform state, with current_learning_rate.'
    )

  def rate_of(group: tuple[str, ...]) -> jax.Array:
    rate = states.read(groups[group][0].value)
    for plateau in plateaus:
      if group[: len(plateau.group)] == plateau.group:  # the plateau's group or a subgroup
        rate = rate * states.read(plateau.value.scale)
    return rate

  if () in groups:
    return rate_of(())
  return {states.label(group): rate_of(group) for group in groups}


def _is_static_zero(value: Any) -> bool:
  """A Python or NumPy zero. JAX arrays never count: under
  ``optax.inject_hyperparams`` they are concrete at init and traced in
  update, and the chain's structure must be the same in both."""
  return isinstance(value, (int, float, np.number)) and value == 0


def _add_decayed_weights(weight_decay: jax.typing.ArrayLike) -> optax.GradientTransformation:
  """``optax.add_decayed_weights`` (same state), λ in each parameter's dtype.

  A traced λ (a float32 one under ``jax.vmap``) would otherwise widen bfloat16 updates.
  """

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('weight_decay needs params: update(updates, state, params).')
    decay = scale_updates(jnp.asarray(weight_decay), params)
    return jax.tree.map(jnp.add, updates, decay), state

  return optax.GradientTransformation(optax.add_decayed_weights(0.0).init, update_fn)


def _trace(momentum: jax.typing.ArrayLike, nesterov: bool) -> optax.GradientTransformation:
  """``optax.trace`` (same state), μ in each buffer's dtype (see :func:`_add_decayed_weights`)."""

  def plus_momentum(updates: optax.Updates, trace: optax.Updates) -> optax.Updates:
    return jax.tree.map(jnp.add, updates, scale_updates(jnp.asarray(momentum), trace))

  def update_fn(updates, state, params=None):
    del params
    trace = plus_momentum(updates, state.trace)
    updates = plus_momentum(updates, trace) if nesterov else trace
    return updates, optax.TraceState(trace=trace)

  return optax.GradientTransformation(optax.trace(0.0).init, update_fn)


def _check_sgd_arguments(
  init_value, decay_factor, stage_length, total_steps, num_stages, momentum, weight_decay
) -> None:
  """The checks of :func:`step_decay_sgd` beyond those of its schedule."""
  for name, value in [
    ('init_value', init_value),
    ('decay_factor', decay_factor),
    ('momentum', momentum if momentum is not None else 0.0),
    ('weight_decay', weight_decay),
  ]:
    check.check_scalar(name, value)
  # The schedule runs on this transformation's int32 count: every cut must be below 2**31.
  if total_steps is not None:
    check.check_integer(
      'total_steps',
      total_steps,
      minimum=1,
      maximum=check.INT32_MAX + 1,
      why=f'its last update has count total_steps - 1 and {check.INT32_COUNT}',
    )
  else:
    check.check_count('stage_length', stage_length, minimum=1)
    if num_stages is not None:
      check.check_integer('num_stages', num_stages, minimum=1)
      if not (is_traced(num_stages) or is_traced(stage_length)):
        last = (np.asarray(num_stages, dtype=object) - 1) * np.asarray(stage_length, dtype=object)
        if np.any(last > check.INT32_MAX):
          raise ValueError(
            f'num_stages={num_stages!r} with stage_length={stage_length!r} puts the last cut '
            f'at count {last}, which is never reached: {check.INT32_COUNT}.'
          )
  if momentum is not None:
    check.check_non_negative('momentum', momentum)
    if not is_traced(momentum) and np.any(np.asarray(momentum) >= 1):
      raise ValueError(
        f'momentum must be < 1, got {momentum!r}: the momentum buffer would grow without bound.'
      )


def step_decay_sgd(
  init_value: jax.typing.ArrayLike,
  *,
  decay_factor: jax.typing.ArrayLike,
  stage_length: int | None = None,
  total_steps: int | None = None,
  num_stages: int | None = None,
  momentum: jax.typing.ArrayLike | None = None,
  nesterov: bool = False,
  weight_decay: jax.typing.ArrayLike = 0.0,
) -> optax.GradientTransformationExtraArgs:
  """SGD with step decay (Algorithm 1 of Wang et al., 2021) in one transformation.

  With the gradient g_t at the parameters x_t::

    d_t     = g_t + λ x_t
    m_t     = μ m_(t-1) + d_t
    x_(t+1) = x_t - η_t d_t             without momentum
              x_t - η_t m_t             heavy ball
              x_t - η_t (d_t + μ m_t)   Nesterov

  with λ = ``weight_decay`` (coupled L2, added to the gradient before
  momentum, as ``torch.optim.SGD`` and the authors' code do), μ = ``momentum``
  and η_t from :func:`step_decay_schedule` (given ``stage_length``) or
  :func:`fixed_horizon_step_decay_schedule` (given ``total_steps``). The step
  count t counts updates, 0 on the first. Under ``optax.MultiSteps`` it counts
  the accumulated updates, not micro-batches. Read η_t back with
  :func:`current_learning_rate`.

  Args:
    init_value: η₀ > 0, a scalar.
    decay_factor: α ≥ 1, the paper's decay factor: the step is divided by it
      at each cut (torch's ``gamma`` and optax's ``decay_rate`` multiply:
      ``gamma=0.1`` is ``decay_factor=10``).
    stage_length: steps per stage (exclusive with ``total_steps``). The step
      count is int32 (it stops at 2^31 - 1), so every cut must come
      at or before that count.
    total_steps: the training budget, for the paper's horizon prescription;
      at most 2^31.
    num_stages: number of stages (optional with either).
    momentum: 0 ≤ μ < 1, or None for plain SGD.
    nesterov: use Nesterov momentum (needs ``momentum > 0``).
    weight_decay: λ ≥ 0; needs ``params`` in ``update``.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` (an ``optax.chain``) whose
    state is a tuple ending in a :class:`TrackedLearningRateState`; ``update``
    needs ``params`` when ``weight_decay`` is not 0.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021, Algorithm 1: https://arxiv.org/abs/2102.09393.
    Momentum and weight decay as in ``torch.optim.SGD``:
    https://pytorch.org/docs/stable/generated/torch.optim.SGD.html

  Example:
    >>> import jax, jax.numpy as jnp, optax, optax_stepdecay as osd
    >>> tx = osd.step_decay_sgd(0.1, decay_factor=10.0, total_steps=100, momentum=0.9)
    >>> params = jnp.ones(3)
    >>> state = tx.init(params)
    >>> updates, state = tx.update(2 * params, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> float(osd.current_learning_rate(state))
    0.10000000149011612
  """
  if (stage_length is None) == (total_steps is None):
    raise ValueError(
      'Pass exactly one of stage_length and total_steps, got '
      f'stage_length={stage_length!r}, total_steps={total_steps!r}.'
    )
  _check_sgd_arguments(
    init_value, decay_factor, stage_length, total_steps, num_stages, momentum, weight_decay
  )
  if total_steps is not None:
    schedule = fixed_horizon_step_decay_schedule(
      init_value, total_steps=total_steps, decay_factor=decay_factor, num_stages=num_stages
    )
  else:
    schedule = step_decay_schedule(
      init_value, decay_factor=decay_factor, stage_length=stage_length, num_stages=num_stages
    )
  check.check_non_negative('weight_decay', weight_decay)
  parts = []
  if not _is_static_zero(weight_decay):
    parts.append(_add_decayed_weights(weight_decay))
  if momentum is not None:
    parts.append(_trace(momentum, nesterov))
  if nesterov and (momentum is None or _is_static_zero(momentum)):
    raise ValueError(f'nesterov=True needs momentum > 0, got momentum={momentum!r}.')
  parts.append(scale_by_tracked_learning_rate(schedule))
  return optax.chain(*parts)

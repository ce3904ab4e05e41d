"""A cooldown that starts on demand: train at the peak as long as you like, then cool down."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from optax_stepdecay import _state as states
from optax_stepdecay import _validation as check
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import new_count
from optax_stepdecay._counts import scale_updates
from optax_stepdecay._stage_schedule import check_learning_rate
from optax_stepdecay._wsd import DECAY_SHAPES
from optax_stepdecay._wsd import check_end
from optax_stepdecay._wsd import check_shape
from optax_stepdecay._wsd import decay_curve
from optax_stepdecay._wsd import decayed
from optax_stepdecay._wsd import end_of


class CooldownState(NamedTuple):
  """State of :func:`scale_by_cooldown`.

  Attributes:
    count: number of updates applied so far (int32, saturating, as in optax).
    learning_rate: the step size of the most recent update; before the first
      update, the one the first update will use.
    cooldown_start: the count of the cooldown's first update; -1 (unset)
      until :func:`start_cooldown` starts it.
    cooldown_steps: the cooldown's length D (int32).
    cooldown_shape: its shape, an index into ``('linear', 'cosine', '1-sqrt',
      'step')``.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  learning_rate: jax.Array
  cooldown_start: jax.Array
  cooldown_steps: jax.Array
  cooldown_shape: jax.Array


def scale_by_cooldown(
  learning_rate: optax.ScalarOrSchedule,
  *,
  end_value: jax.typing.ArrayLike | None = None,
  end_ratio: jax.typing.ArrayLike | None = None,
  flip_sign: bool = True,
) -> optax.GradientTransformation:
  """Scales updates by a step size that cools down when :func:`start_cooldown` says so.

  Updates are u_t = -η_t g_t with t the number of earlier updates (0 on the
  first). Until a cooldown starts, η_t = s(t) = ``learning_rate(t)``; once
  ``start_cooldown(state, decay_steps=D, shape=shape)`` has set its start c (the count of the
  next update)::

    η_t = s(t)                            for t < c
          e + (s(t) - e) d((t - c) / D)   for c ≤ t < c + D
          e                               for t ≥ c + D

  with d the decay shape of :func:`wsd_schedule` and e the end value:
  ``end_value`` or ``end_ratio`` * s(t) (at most one; 0 by default; a cut
  by α is ``shape='step'`` with ``end_ratio=1/α``). A run that warms up and
  holds the peak, ``wsd_schedule(peak, warmup_steps=W)``, and cools down
  from count c on, takes the steps of ``wsd_schedule(peak, warmup_steps=W,
  stable_steps=c - W, decay_steps=D, decay_shape=shape)`` with the same
  end, bit for bit under jit. So the stable phase can last as long as you
  like, and one checkpoint can branch many cooldowns: restore it, start a
  cooldown, train on; restore it again, start another (or start several
  at once under ``jax.vmap``). The state holds the start, so a checkpoint
  taken mid-cooldown resumes it exactly.

  Works inside ``optax.chain``, ``optax.MultiSteps`` (c counts accumulated
  updates), ``optax.inject_hyperparams`` and Flax's ``nnx.Optimizer``; read
  η_t back with :func:`current_learning_rate`.

  Args:
    learning_rate: s, a float > 0 or an optax schedule. It is evaluated at
      an int32 count that stops at 2^31 - 1, as optax's counts do: a
      schedule of this package with stage boundaries beyond that is refused.
    end_value: e, in [0, ``learning_rate``].
    end_ratio: e / s(t), in [0, 1] (transformers' ``min_lr_ratio``).
    flip_sign: negate the updates (descent), as optax does by default.

  Returns:
    An ``optax.GradientTransformation`` with a :class:`CooldownState`.

  References:
    Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations" (2024), cooldowns branched from one constant run:
    https://arxiv.org/abs/2405.18392

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.scale_by_cooldown(1.0)
    >>> state = tx.init(jnp.zeros(1))
    >>> _, state = tx.update(jnp.ones(1), state)
    >>> state = osd.start_cooldown(state, decay_steps=4, shape='linear')
    >>> rates = []
    >>> for _ in range(5):
    ...   _, state = tx.update(jnp.ones(1), state)
    ...   rates.append(float(osd.current_learning_rate(state)))
    >>> int(state.cooldown_start), rates
    (1, [1.0, 0.75, 0.5, 0.25, 0.0])
  """
  check_learning_rate(learning_rate)
  check_end(end_value, end_ratio, None, learning_rate, 'learning_rate')
  sign = -1.0 if flip_sign else 1.0

  def rate(state: CooldownState) -> jax.Array:
    t = state.count
    value = learning_rate(t) if callable(learning_rate) else learning_rate
    base = jnp.asarray(value, dtype=float_dtype())
    start, length = state.cooldown_start, state.cooldown_steps
    started = (start >= 0) & (t >= start)
    offset = jnp.where(started, t - start, 0)
    factor = decay_curve(state.cooldown_shape, jnp.minimum(offset, length), length)
    cooled = decayed(base, factor, end_value, end_ratio, None)
    end = end_of(base, end_value, end_ratio, None)
    return jnp.where(started, jnp.where(offset < length, cooled, end), base)

  def init_fn(params: optax.Params) -> CooldownState:
    del params
    unset = jnp.full([], -1, jnp.int32)
    state = CooldownState(
      new_count(), jnp.zeros([], float_dtype()), unset, new_count(), new_count()
    )
    return state._replace(learning_rate=rate(state))

  def update_fn(updates, state, params=None):
    del params
    step_size = rate(state)
    updates = scale_updates(sign * step_size, updates)
    count = optax.safe_increment(state.count)
    return updates, state._replace(count=count, learning_rate=step_size)

  return optax.GradientTransformation(init_fn, update_fn)


def start_cooldown(
  opt_state: Any, *, decay_steps: int, shape: str = '1-sqrt', when: jax.typing.ArrayLike = True
) -> Any:
  """Starts the cooldown of every :func:`scale_by_cooldown` state at the current count.

  Returns a copy of ``opt_state`` (any nesting: ``optax.chain``,
  ``optax.MultiSteps``, ``optax.inject_hyperparams``, an ``nnx.Optimizer``'s
  ``opt_state``) in which each :class:`CooldownState` whose cooldown has not
  started yet gets ``cooldown_start`` = its ``count``, the count of the next
  update, with length D = ``decay_steps`` and ``shape``. A cooldown that
  has started is left as it is: calling this again, or on every step with
  a condition, never restarts or stretches it; to branch another cooldown,
  start it from a state saved before the first. Pure and jittable;
  ``decay_steps`` may be traced (several branches at once under
  ``jax.vmap``). With Flax, ``optimizer.opt_state =
  osd.start_cooldown(optimizer.opt_state, decay_steps=D)``, also inside ``nnx.jit``.

  Start it when you choose: at a planned count, from a restored checkpoint,
  or when a test fires, with ``when`` (a boolean array, ``False``: no
  change), such as your own plateau check of a validation loss, or
  :func:`auto_step_decay`'s distance diagnostic as the detector (``decay_factor=1``
  never cuts, and it only negates updates at ``init_value=1``)::

    tx = optax.chain(
      osd.scale_by_cooldown(0.1, flip_sign=False),
      osd.auto_step_decay(1.0, decay_factor=1.0),
    )
    ...  # after each update:
    state = osd.start_cooldown(state, decay_steps=2000, when=state[1].stage > 0)

  Args:
    opt_state: an optimizer state holding at least one :class:`CooldownState`.
    decay_steps: D, an integer in [0, 2^31 - 1]; 0 drops to the end value at once.
    shape: ``'1-sqrt'`` (default), ``'linear'``, ``'cosine'`` or ``'step'``
      (see :func:`wsd_schedule`).
    when: start only where this is true (traced values allowed).

  Returns:
    The new optimizer state.

  Raises:
    ValueError: ``opt_state`` holds no :class:`CooldownState`.

  References:
    Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed
    Training Durations" (2024): https://arxiv.org/abs/2405.18392

  Example:
    >>> import jax.numpy as jnp, optax_stepdecay as osd
    >>> tx = osd.scale_by_cooldown(osd.wsd_schedule(1.0, warmup_steps=10))
    >>> state = osd.start_cooldown(tx.init(jnp.zeros(1)), decay_steps=100, shape='cosine')
    >>> int(state.cooldown_start), int(osd.start_cooldown(state, decay_steps=5).cooldown_steps)
    (0, 100)
  """
  check.check_count('decay_steps', decay_steps, minimum=0)
  code = check_shape('shape', shape, DECAY_SHAPES)

  def start(node: CooldownState) -> CooldownState:
    begin = (states.read(node.cooldown_start) < 0) & jnp.asarray(when)
    new = {
      'cooldown_start': jnp.where(begin, states.read(node.count), states.read(node.cooldown_start)),
      'cooldown_steps': jnp.where(begin, decay_steps, states.read(node.cooldown_steps)),
      'cooldown_shape': jnp.where(begin, code, states.read(node.cooldown_shape)),
    }
    return node._replace(
      **{k: states.write(getattr(node, k), v.astype(jnp.int32)) for k, v in new.items()}
    )

  result, found = states.replace_each(opt_state, CooldownState, start)
  if not found:
    raise ValueError(
      'opt_state holds no CooldownState: build the optimizer with scale_by_cooldown.'
    )
  return result

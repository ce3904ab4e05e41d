"""Which point to return: a randomly sampled iterate, or an average of iterates."""

from __future__ import annotations

from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optax_stepdecay import _state as states
from optax_stepdecay import _validation as check
from optax_stepdecay._counts import accumulator_dtype
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import new_count
from optax_stepdecay._counts import statistics_dtype
from optax_stepdecay._stage_schedule import StageSchedule


class SampledIterateState(NamedTuple):
  """State of :func:`sample_iterate`.

  Attributes:
    count: updates seen so far.
    key: the PRNG key (a raw ``uint32[2]`` key, checkpoint-friendly).
    total_weight: the sum of the weights of the iterates seen.
    iterate: the sampled iterate.
    sampled_step: the count of the update the sampled iterate was the input of.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  key: jax.Array
  total_weight: jax.Array
  iterate: optax.Params
  sampled_step: jax.Array


class AverageState(NamedTuple):
  """State of :func:`stage_average` and :func:`suffix_average`.

  Attributes:
    count: updates seen so far.
    stage: the stage of the last update (stage averages restart when it changes).
    num_averaged: how many iterates the average holds.
    average: the running average (the latest iterate while none is averaged), in
      the parameters' dtype promoted to at least float32: a bfloat16 average
      would stop moving once 1/n falls below its precision.
    params_like: arrays of size 0 in the parameters' dtypes, from which
      :func:`output_params` reads the dtype to return the average in.
  """

  count: jax.Array  # type: ignore[assignment]  # optax names it so
  stage: jax.Array
  num_averaged: jax.Array
  average: optax.Params
  params_like: optax.Params


def sample_iterate(
  learning_rate: optax.ScalarOrSchedule,
  *,
  weighting: Literal['inverse', 'proportional'] = 'inverse',
  seed: int = 0,
) -> optax.GradientTransformation:
  """Keeps one iterate sampled with probability proportional to 1/η_t or η_t.

  The output rule of the paper's non-convex analysis: among the iterates
  x_0, ..., x_(T-1) (the points the gradients were taken at), return x_t with
  probability::

    p_t = w_t / (w_0 + ... + w_(T-1)),   w_t = 1 / η_t  ('inverse': Wang et al.)
                                      or w_t = η_t      ('proportional': Ghadimi and Lan)

  Sampled online in one pass with one copy of the parameters (weighted
  reservoir sampling: x_t replaces the kept iterate with probability
  w_t / Σ_(s ≤ t) w_s). Updates pass through unchanged; chain it
  after the optimizer with the same ``learning_rate`` and read the point with
  :func:`output_params`. Iterates with η_t = 0 (a warmup's first
  step) get weight 0. The sum of the weights accumulates in the parameters'
  dtype promoted to at least float32; the kept iterate has the parameters' dtype.

  Args:
    learning_rate: the optimizer's step size, a float > 0 or a schedule.
    weighting: ``'inverse'`` or ``'proportional'``.
    seed: seed of the sampling's PRNG key, kept in the state: at most
      2^32 - 1 (2^63 - 1 under ``jax_enable_x64``), as
      ``jax.random.PRNGKey`` keeps only that many bits.

  Returns:
    An ``optax.GradientTransformation`` with a :class:`SampledIterateState`;
    ``update`` needs ``params``.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021, the output rule of the non-convex analysis:
    https://arxiv.org/abs/2102.09393.
    Ghadimi and Lan, "Stochastic First- and Zeroth-order Methods for Nonconvex
    Stochastic Programming", SIAM J. Optim. 23(4), 2013:
    https://arxiv.org/abs/1309.5549.
    Chao, "A general purpose unequal probability sampling plan", Biometrika
    69(3), 1982: https://doi.org/10.1093/biomet/69.3.653

  Example:
    >>> import jax.numpy as jnp, optax, optax_stepdecay as osd
    >>> schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=5)
    >>> tx = optax.chain(optax.sgd(schedule), osd.sample_iterate(schedule, seed=3))
    >>> params = jnp.zeros(2)
    >>> state = tx.init(params)
    >>> for _ in range(20):
    ...   updates, state = tx.update(jnp.ones(2), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> osd.output_params(state).shape
    (2,)
  """
  if weighting not in ('inverse', 'proportional'):
    raise ValueError(f"weighting must be 'inverse' or 'proportional', got {weighting!r}.")
  if not callable(learning_rate):
    check.check_scalar('learning_rate', learning_rate)
    check.check_positive('learning_rate', learning_rate)
  largest_seed = int(np.iinfo(count_dtype()).max)  # uint32, or int64 under x64
  check.check_integer(
    'seed',
    seed,
    minimum=0,
    maximum=largest_seed,
    why=f'jax.random.PRNGKey keeps only the low bits of larger seeds ({count_dtype()})',
  )

  def weight(count: jax.Array) -> jax.Array:
    rate = jnp.asarray(
      learning_rate(count) if callable(learning_rate) else learning_rate, float_dtype()
    )
    if weighting == 'proportional':
      return jnp.maximum(rate, 0.0)
    return jnp.where(rate > 0, 1 / jnp.where(rate > 0, rate, 1.0), 0.0)

  def init_fn(params: optax.Params) -> SampledIterateState:
    return SampledIterateState(
      count=new_count(),
      key=jax.random.PRNGKey(seed),
      total_weight=jnp.zeros([], statistics_dtype(params)),
      iterate=jax.tree.map(jnp.array, params),
      sampled_step=new_count(),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('sample_iterate needs params: update(updates, state, params).')
    w = weight(state.count).astype(state.total_weight.dtype)
    total = state.total_weight + w
    key, subkey = jax.random.split(state.key)
    # Drawn in float32 whatever jax_enable_x64 says: the same seed samples the same iterates.
    draw = jax.random.uniform(subkey, dtype=jnp.float32).astype(total.dtype)
    take = draw * total < w  # probability w / total, 0 when total is 0
    iterate = jax.tree.map(lambda new, old: jnp.where(take, new, old), params, state.iterate)
    return updates, SampledIterateState(
      count=optax.safe_increment(state.count),
      key=key,
      total_weight=total,
      iterate=iterate,
      sampled_step=jnp.where(take, state.count, state.sampled_step),
    )

  return optax.GradientTransformation(init_fn, update_fn)


def _averaging(restart_index) -> optax.GradientTransformation:
  """Averages the iterates x_{t+1} = params + updates; restart_index(t) says when to start anew."""

  def init_fn(params: optax.Params) -> AverageState:
    average = jax.tree.map(lambda p: jnp.array(p, accumulator_dtype(p.dtype)), params)
    like = jax.tree.map(lambda p: jnp.zeros([0], p.dtype), params)
    return AverageState(new_count(), new_count(), new_count(), average, like)

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError('averaging needs params: update(updates, state, params).')
    stage, averaging = restart_index(state.count)
    restart = (stage != state.stage) | ~averaging
    num = jnp.where(restart, 0, state.num_averaged)

    def step(average, x, u):
      # The iterate as the parameters hold it, averaged in the average's dtype.
      new = (x + u).astype(x.dtype).astype(average.dtype)
      weight = 1 / (num + 1).astype(average.dtype)
      return jnp.where(restart, new, average + weight * (new - average))

    average = jax.tree.map(step, state.average, params, updates)
    return updates, AverageState(
      count=optax.safe_increment(state.count),
      stage=stage.astype(jnp.int32),
      num_averaged=jnp.where(averaging, num + 1, 0),
      average=average,
      params_like=state.params_like,
    )

  return optax.GradientTransformation(init_fn, update_fn)


def stage_average(schedule: StageSchedule) -> optax.GradientTransformation:
  """The running average of the iterates of the current stage of ``schedule``.

  After update t (0-based) in stage k, the output is
  (x_(s_k+1) + ... + x_(t+1)) / (t - s_k + 1), with
  s_k the first count of the stage and x_(j+1) the iterate
  update j produced; it restarts at each cut. Chain it after the
  optimizer and read it with :func:`output_params`.

  Args:
    schedule: the optimizer's schedule, one of this package (it knows its
      stages).

  Returns:
    An ``optax.GradientTransformation`` with an :class:`AverageState`;
    ``update`` needs ``params``.

  References:
    Polyak and Juditsky, "Acceleration of Stochastic Approximation by
    Averaging", SIAM J. Control Optim. 30(4), 1992:
    https://doi.org/10.1137/0330046
  """
  if not isinstance(schedule, StageSchedule):
    raise ValueError(f'schedule must be a schedule of this package, got {schedule!r}.')
  return _averaging(lambda t: (schedule.stage_index(t), jnp.array(True)))


def suffix_average(start_step: int) -> optax.GradientTransformation:
  """The average of the iterates produced by the updates from ``start_step`` on.

  After update t ≥ S the output is
  (x_(S+1) + ... + x_(t+1)) / (t - S + 1); before, the latest
  iterate. For a budget of T steps, ``suffix_average(T // 2)`` is the
  classical tail average.

  Args:
    start_step: S ≥ 0, the count of the first update averaged; at
      most 2^31 - 1, the largest value of the int32 count.

  Returns:
    An ``optax.GradientTransformation`` with an :class:`AverageState`;
    ``update`` needs ``params``.

  References:
    Rakhlin, Shamir and Sridharan, "Making Gradient Descent Optimal for
    Strongly Convex Stochastic Optimization", ICML 2012 (suffix averaging):
    https://arxiv.org/abs/1109.5647
  """
  check.check_count('start_step', start_step, minimum=0)
  return _averaging(lambda t: (jnp.zeros([], jnp.int32), t >= start_step))


def _point(state: SampledIterateState | AverageState) -> optax.Params:
  """The point a state keeps, in the parameters' dtypes."""
  if isinstance(state, SampledIterateState):
    return states.read_tree(state.iterate)
  average, like = states.read_tree(state.average), states.read_tree(state.params_like)
  return jax.tree.map(lambda average, like: average.astype(like.dtype), average, like)


def output_params(opt_state: Any) -> optax.Params:
  """The point kept by :func:`sample_iterate`, :func:`stage_average` or :func:`suffix_average`.

  Parameter groups: when the output rules are in the groups of an
  ``optax.multi_transform``, each group's point fills that group's
  parameters, and the result is shaped like all the parameters (every
  group needs an output rule). An output rule inside an ``optax.masked``
  covers some parameters only: it is refused, with the place to read it from.

  Args:
    opt_state: an optimizer state holding one of their states, in any nesting
      (``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps``,
      ``optax.multi_transform``, an ``nnx.Optimizer``'s ``opt_state``). With
      several for the same parameters, the first :func:`sample_iterate` state
      is used, or if there is none the first average; one outside the
      parameter groups is used before those inside.

  Returns:
    The sampled iterate or the average, shaped like the parameters and in their
    dtypes (averages are kept in at least float32 and read back).

  Raises:
    ValueError: the state holds none of them, holds one inside an
      ``optax.masked``, or a parameter group has none.

  References:
    Wang, Magnússon and Johansson, "On the Convergence of Step Decay Step-Size for
    Stochastic Optimization", NeurIPS 2021, the output rule: https://arxiv.org/abs/2102.09393

  Example:
    >>> import jax.numpy as jnp, optax, optax_stepdecay as osd
    >>> def sgd_averaged(learning_rate):
    ...   return optax.chain(optax.sgd(learning_rate), osd.suffix_average(0))
    >>> tx = optax.multi_transform({'body': sgd_averaged(0.1), 'head': sgd_averaged(0.01)},
    ...                            {'w': 'body', 'out': 'head'})
    >>> params = {'w': jnp.ones(3), 'out': jnp.ones(2)}
    >>> updates, state = tx.update(params, tx.init(params), params)
    >>> osd.output_params(state)
    {'out': Array([0.99, 0.99], dtype=float32), 'w': Array([0.9, 0.9, 0.9], dtype=float32)}
  """
  found = states.locate(opt_state, [SampledIterateState, AverageState])
  if not found:
    raise ValueError('opt_state holds no sample_iterate, stage_average or suffix_average state.')
  states.check_unmasked(found, 'an output rule')
  groups = states.by_group(found)
  if () in groups:
    return _point(groups[()][0].value)
  return states.merge_groups(
    [_point(group[0].value) for group in groups.values()],
    'sample_iterate, stage_average or suffix_average: chain an output rule into every group',
  )

"""One dtype rule for every stateful transformation.

Statistics accumulate in the parameters' dtype promoted to at least float32; step sizes (schedule
values) and reduce_on_plateau's statistics, which see no parameters, in the value dtype
(float32, float64 under x64). Updates and parameter-shaped state keep the parameters' dtype.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_stepdecay as osd
from optax_stepdecay._counts import float_dtype
from optax_stepdecay._counts import statistics_dtype

SHAPE = (5,)
SCHEDULE_ARGS = {'init_value': 0.1, 'decay_factor': 2.0, 'stage_length': 2}


def transformations():
  """name -> a function building the transformation (under the dtype settings of the test)."""
  schedule = lambda: osd.step_decay_schedule(**SCHEDULE_ARGS)  # noqa: E731
  return {
    'step_decay_sgd': lambda: osd.step_decay_sgd(
      0.1, decay_factor=2.0, stage_length=2, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    'scale_by_tracked_learning_rate': lambda: osd.scale_by_tracked_learning_rate(schedule()),
    'scale_by_cooldown': lambda: osd.scale_by_cooldown(schedule(), end_ratio=0.1),
    'auto_step_decay': lambda: osd.auto_step_decay(0.1, first_check=1),
    'reduce_on_plateau': lambda: osd.reduce_on_plateau(decay_factor=2.0, patience=0),
    'sample_iterate': lambda: osd.sample_iterate(schedule()),
    'stage_average': lambda: osd.stage_average(schedule()),
    'suffix_average': lambda: osd.suffix_average(1),
  }


NAMES = list(transformations())


def train(name, dtype, num_steps=6):
  """``num_steps`` updates under jit in a scan, whose carry must keep its dtypes."""
  tx = optax.with_extra_args_support(transformations()[name]())
  params = jnp.linspace(-1.0, 1.0, SHAPE[0]).astype(dtype)
  state = tx.init(params)

  def body(carry, t):
    params, state = carry
    grads = (params - 0.5 + 0.01 * t).astype(params.dtype)
    updates, state = tx.update(grads, state, params, value=jnp.sum(params.astype(float)))
    return (optax.apply_updates(params, updates), state), updates

  (params, final), updates = jax.jit(
    lambda c: jax.lax.scan(body, c, jnp.arange(num_steps, dtype=jnp.int32))
  )((params, state))
  return state, final, params, updates


def floating_leaves(state):
  return [leaf for leaf in jax.tree.leaves(state) if jnp.issubdtype(leaf.dtype, jnp.floating)]


@pytest.mark.parametrize('name', NAMES)
def test_float64_parameters_keep_float64_statistics_under_x64(x64, name):
  del x64
  initial, final, params, updates = train(name, jnp.float64)
  assert params.dtype == updates.dtype == jnp.float64
  assert jax.tree.map(lambda a: a.dtype, initial) == jax.tree.map(lambda a: a.dtype, final)
  leaves = floating_leaves(final)
  assert leaves, 'no floating state'
  assert {leaf.dtype for leaf in leaves} == {np.dtype(np.float64)}, name


@pytest.mark.parametrize('name', NAMES)
def test_bfloat16_parameters_stay_bfloat16_with_float32_statistics(name):
  initial, final, params, updates = train(name, jnp.bfloat16)
  assert params.dtype == updates.dtype == jnp.bfloat16
  assert jax.tree.map(lambda a: a.dtype, initial) == jax.tree.map(lambda a: a.dtype, final)
  averaged = isinstance(final, osd.AverageState)
  for leaf in floating_leaves(final):
    if leaf.shape == SHAPE and not averaged:  # momentum, reference point, sampled iterate
      assert leaf.dtype == jnp.bfloat16, name
    elif leaf.size:  # averages, scalar statistics and step sizes (not the dtype markers)
      assert leaf.dtype == jnp.float32, name
  if averaged:
    assert osd.output_params(final).dtype == jnp.bfloat16


@pytest.mark.parametrize('name', NAMES)
def test_bfloat16_parameters_under_x64_keep_their_dtype_too(x64, name):
  del x64
  initial, final, params, updates = train(name, jnp.bfloat16)
  assert params.dtype == updates.dtype == jnp.bfloat16
  assert jax.tree.map(lambda a: a.dtype, initial) == jax.tree.map(lambda a: a.dtype, final)
  assert all(jnp.finfo(leaf.dtype).bits >= 32 for leaf in floating_leaves(final) if leaf.ndim != 1)


def test_statistics_follow_the_parameters_and_plateaus_the_value_dtype(x64):
  del x64
  tree = {'a': jnp.zeros(2, jnp.bfloat16), 'b': jnp.zeros(2, jnp.float16)}
  assert statistics_dtype(tree) == np.float32
  assert statistics_dtype({'a': jnp.zeros(2, jnp.float32)}) == np.float32
  assert statistics_dtype({'a': jnp.zeros(2), 'b': jnp.zeros(2, jnp.float32)}) == np.float64
  assert statistics_dtype(jnp.zeros(2, jnp.complex128)) == np.float64
  state = osd.reduce_on_plateau().init(jnp.zeros(2, jnp.float32))
  assert state.scale.dtype == state.best_value.dtype == float_dtype() == np.float64


def test_auto_step_decay_measures_in_float64_what_float32_would_round(x64):
  del x64
  # A move of 1e-5 from an iterate of size 1e4: float32 would round the new iterate to 1e4.
  tx = osd.auto_step_decay(1.0, first_check=1)
  params = jnp.full(4, 1e4)
  state = tx.init(params)
  _, state = tx.update(jnp.full(4, 1e-5), state, params)
  assert state.distance.dtype == jnp.float64
  chex.assert_trees_all_close(float(state.distance), 4 * 1e-10, rtol=1e-6)

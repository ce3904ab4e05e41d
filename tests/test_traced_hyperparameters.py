"""auto_step_decay and reduce_on_plateau with traced hyperparameters (vmap, inject_hyperparams)."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import optax_stepdecay as osd

CURVATURE = jnp.linspace(0.2, 2.0, 20)
NUM_STEPS = 1500


def noisy_quadratic(tx, num_steps=NUM_STEPS, seed=0):
  """SGD on 0.5 * sum(a x^2) with N(0, 1) gradient noise, from x = 10; final x and state."""
  x = jnp.full(CURVATURE.shape, 10.0)
  noise = jax.random.normal(jax.random.key(seed), (num_steps, *CURVATURE.shape))

  def body(carry, n):
    x, state = carry
    updates, state = tx.update(CURVATURE * x + n, state, x)
    return (x + updates, state), None

  (x, state), _ = jax.lax.scan(body, (x, tx.init(x)), noise)
  return x, state


def auto(init_value, decay_factor=2.0, **options):
  return osd.auto_step_decay(init_value, decay_factor=decay_factor, **options)


def assert_runs_equal(swept, one, index):
  x, state = swept
  x_one, state_one = one
  chex.assert_trees_all_close(x[index], x_one, rtol=1e-5, atol=1e-6)
  assert int(state.stage[index]) == int(state_one.stage)
  chex.assert_trees_all_close(state.learning_rate[index], state_one.learning_rate, rtol=1e-6)


def test_vmapped_init_value_equals_per_value_runs():
  etas = [0.1, 0.2]
  swept = jax.jit(jax.vmap(lambda eta: noisy_quadratic(auto(eta))))(jnp.array(etas))
  for i, eta in enumerate(etas):
    one = jax.jit(lambda eta=eta: noisy_quadratic(auto(eta)))()
    assert int(one[1].stage) >= 2  # the sweep exercises cuts
    assert_runs_equal(swept, one, i)


def test_vmapped_hyperparameters_together_equal_per_value_runs():
  grid = dict(
    init_value=[0.2, 0.15],
    decay_factor=[2.0, 3.0],
    min_value=[0.0, 0.01],
    first_check=[64, 50],
    check_growth=[1.5, 1.4],
    slope_threshold=[0.6, 0.5],
    min_growth=[1.5, 1.3],
    fallback_growth=[2.0, 2.5],
  )

  def run(values):
    init_value, decay_factor = values.pop('init_value'), values.pop('decay_factor')
    return noisy_quadratic(auto(init_value, decay_factor, **values))

  arrays = {k: jnp.asarray(v) for k, v in grid.items()}
  swept = jax.jit(jax.vmap(run))(arrays)
  for i in range(2):
    values = {k: v[i] for k, v in grid.items()}
    one = jax.jit(lambda values=values: run(dict(values)))()
    assert int(one[1].stage) >= 2
    assert_runs_equal(swept, one, i)


def test_inject_hyperparams_auto_step_decay_equals_the_plain_transform():
  factory = optax.inject_hyperparams(osd.auto_step_decay)
  tx = factory(init_value=0.2, decay_factor=2.0)
  x, state = jax.jit(lambda: noisy_quadratic(tx))()
  x_plain, state_plain = jax.jit(lambda: noisy_quadratic(auto(0.2)))()
  chex.assert_trees_all_close(x, x_plain, rtol=1e-5, atol=1e-6)
  assert int(state.inner_state.stage) == int(state_plain.stage) >= 2
  chex.assert_trees_all_close(
    osd.current_learning_rate(state), osd.current_learning_rate(state_plain)
  )
  assert sorted(state.hyperparams) == [
    'check_growth',
    'decay_factor',
    'fallback_growth',
    'first_check',
    'init_value',
    'min_growth',
    'min_value',
    'slope_threshold',
  ]


def test_inject_hyperparams_auto_step_decay_init_under_jit_and_live_changes():
  tx = optax.inject_hyperparams(osd.auto_step_decay)(init_value=0.2)
  params = jnp.ones(3)
  state = jax.jit(tx.init)(params)
  state.hyperparams['init_value'] = jnp.float32(0.05)
  updates, state = jax.jit(tx.update)(jnp.ones(3), state, params)
  chex.assert_trees_all_close(updates, jnp.full(3, -0.05))
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.05))


def test_traced_auto_step_decay_values_are_not_checked():
  # Documented: traced hyperparameters pass through unchecked. Concrete, min_value=1.0 above
  # init_value=0.1 is refused; traced, the floor simply wins.
  def first_update(min_value):
    tx = auto(0.1, min_value=min_value)
    return tx.update(jnp.ones(2), tx.init(jnp.zeros(2)), jnp.zeros(2))[0]

  with pytest.raises(ValueError, match=r'min_value=1\.0 must be <= init_value=0\.1'):
    first_update(1.0)
  chex.assert_trees_all_close(jax.vmap(first_update)(jnp.array([1.0])), jnp.full((1, 2), -1.0))


def plateau_scales(tx, metrics):
  state = tx.init(jnp.zeros(1))

  def body(state, metric):
    updates, state = tx.update(jnp.ones(1), state, value=metric)
    return state, updates[0]

  return jax.lax.scan(body, state, jnp.asarray(metrics, jnp.float32))


METRICS = [3.0, 2.0, 2.0, 2.0, 2.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_vmapped_plateau_decay_factor_and_patience_equal_per_value_runs():
  factors, patiences = [2.0, 4.0], [0, 1]

  def run(factor, patience):
    return plateau_scales(osd.reduce_on_plateau(factor, patience=patience), METRICS)

  (states, scales) = jax.jit(jax.vmap(run))(jnp.array(factors), jnp.array(patiences))
  for i, (factor, patience) in enumerate(zip(factors, patiences, strict=True)):
    state, expected = run(factor, patience)
    chex.assert_trees_all_equal(scales[i], expected)
    assert int(states.num_cuts[i]) == int(state.num_cuts) > 0


def test_inject_hyperparams_reduce_on_plateau_equals_the_plain_transform():
  factory = optax.inject_hyperparams(osd.reduce_on_plateau)
  tx = factory(decay_factor=2.0, patience=1, cooldown=1, threshold=0.01)
  state, scales = jax.jit(lambda: plateau_scales(tx, METRICS))()
  plain_state, plain = plateau_scales(
    osd.reduce_on_plateau(2.0, patience=1, cooldown=1, threshold=0.01), METRICS
  )
  chex.assert_trees_all_equal(scales, plain)
  assert int(state.inner_state.num_cuts) == int(plain_state.num_cuts) > 0
  chex.assert_trees_all_close(state.hyperparams['decay_factor'], jnp.float32(2.0))

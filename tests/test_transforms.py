"""SGD with step decay, the tracked learning rate, and composition with optax and Flax."""

import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optax_stepdecay as osd


def quadratic_grad(params, curvature):
  return jax.tree.map(lambda x, a: a * x, params, curvature)


def run(tx, params, grad_fn, num_steps):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(num_steps):
    updates, state = update(grad_fn(params), state, params)
    params = optax.apply_updates(params, updates)
  return params, state


def test_optax_sgd_with_schedule_on_a_quadratic_equals_hand_computation():
  schedule = osd.step_decay_schedule(0.4, decay_factor=2.0, stage_length=5)
  curvature = 1.5
  params, _ = run(optax.sgd(schedule), jnp.float32(3.0), lambda x: curvature * x, 17)
  expected = 3.0
  for t in range(17):
    expected *= 1 - 0.4 / 2.0 ** (t // 5) * curvature
  chex.assert_trees_all_close(float(params), expected, rtol=1e-5)


def torch_style_sgd(params, grads_fn, lrs, momentum, nesterov, weight_decay):
  """A hand-written torch.optim.SGD (dampening 0) in float64 NumPy."""
  params = {k: np.asarray(v, np.float64) for k, v in params.items()}
  buffers = {k: np.zeros_like(v) for k, v in params.items()}
  for lr in lrs:
    grads = grads_fn(params)
    for k in params:
      d = grads[k] + weight_decay * params[k]
      if momentum:
        buffers[k] = momentum * buffers[k] + d
        d = d + momentum * buffers[k] if nesterov else buffers[k]
      params[k] = params[k] - lr * d
  return params


@pytest.mark.parametrize(
  ('momentum', 'nesterov', 'weight_decay'),
  [
    (None, False, 0.0),
    (0.9, False, 0.0),
    (0.9, True, 0.01),
    (None, False, 0.05),
    (0.5, False, 0.05),
  ],
)
def test_equals_hand_written_sgd_loop(momentum, nesterov, weight_decay):
  curvature = {'w': jnp.array([0.5, 2.0, 1.0]), 'b': jnp.array(3.0)}
  params = {'w': jnp.array([1.0, -2.0, 0.5]), 'b': jnp.array(1.5)}
  tx = osd.step_decay_sgd(
    0.1,
    decay_factor=3.0,
    total_steps=40,
    momentum=momentum,
    nesterov=nesterov,
    weight_decay=weight_decay,
  )
  ours, state = run(tx, params, lambda p: quadratic_grad(p, curvature), 40)
  schedule = osd.fixed_horizon_step_decay_schedule(0.1, total_steps=40, decay_factor=3.0)
  lrs = [float(np.float32(schedule(t))) for t in range(40)]
  hand = torch_style_sgd(
    params,
    lambda p: {k: np.asarray(curvature[k], np.float64) * v for k, v in p.items()},
    lrs,
    momentum,
    nesterov,
    weight_decay,
  )
  chex.assert_trees_all_close(ours, jax.tree.map(jnp.float32, hand), rtol=2e-5, atol=1e-6)
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(lrs[-1]))


def test_stage_length_drives_step_decay_schedule():
  tx = osd.step_decay_sgd(1.0, decay_factor=10.0, stage_length=2, num_stages=2)
  _, state = run(tx, jnp.zeros(2), lambda p: jnp.ones(2), 6)
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.1))


def test_state_is_a_named_tuple_of_arrays():
  state = osd.step_decay_sgd(1.0, decay_factor=10.0, stage_length=2).init(jnp.zeros(2))
  (tracked,) = [s for s in state if isinstance(s, osd.TrackedLearningRateState)]
  chex.assert_shape((tracked.count, tracked.learning_rate), ((), ()))
  chex.assert_type(tracked.count, jnp.int32)


# current_learning_rate.


def test_before_and_after_updates():
  tx = osd.scale_by_tracked_learning_rate(
    osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1)
  )
  state = tx.init(jnp.zeros(1))
  assert float(osd.current_learning_rate(state)) == 1.0
  _, state = tx.update(jnp.ones(1), state)
  assert float(osd.current_learning_rate(state)) == 1.0  # the first update used 1.0
  _, state = tx.update(jnp.ones(1), state)
  assert float(osd.current_learning_rate(state)) == 0.5


def test_in_a_chain_under_jit():
  tx = optax.chain(
    optax.clip_by_global_norm(1.0), osd.step_decay_sgd(0.1, decay_factor=10.0, stage_length=3)
  )
  _, state = run(tx, jnp.zeros(2), lambda p: jnp.ones(2), 4)
  lr = jax.jit(osd.current_learning_rate)(state)
  chex.assert_trees_all_close(lr, jnp.float32(0.01))


def test_reads_inject_hyperparams_states():
  schedule = osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=2)
  tx = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
  _, state = run(tx, jnp.zeros(2), lambda p: jnp.ones(2), 3)
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.01))


def test_inject_hyperparams_around_step_decay_sgd():
  factory = optax.inject_hyperparams(osd.step_decay_sgd, static_args=('stage_length',))
  tx = factory(init_value=0.1, decay_factor=10.0, stage_length=2, weight_decay=0.0)
  params, state = run(tx, jnp.ones(2), lambda p: jnp.ones(2), 3)
  chex.assert_trees_all_close(params, jnp.full(2, 1 - 0.1 - 0.1 - 0.01), rtol=1e-6)
  state.hyperparams['init_value'] = jnp.float32(1.0)  # hyperparameters can be changed live
  params, _ = run(tx, params, lambda p: jnp.ones(2), 0)


def test_multi_steps_counts_updates_not_micro_steps():
  tx = optax.MultiSteps(
    osd.step_decay_sgd(1.0, decay_factor=10.0, stage_length=2), every_k_schedule=3
  )
  params, state = run(tx, jnp.zeros(1), lambda p: jnp.ones(1), 12)
  # 12 micro-steps are 4 updates with step sizes 1, 1, 0.1, 0.1.
  chex.assert_trees_all_close(params, jnp.array([-2.2]), rtol=1e-6)
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.1))


def test_multi_transform():
  tx = optax.multi_transform(
    {
      'decayed': osd.step_decay_sgd(1.0, decay_factor=10.0, stage_length=1),
      'frozen': optax.set_to_zero(),
    },
    {'a': 'decayed', 'b': 'frozen'},
  )
  params, state = run(
    tx, {'a': jnp.zeros(1), 'b': jnp.zeros(1)}, lambda p: jax.tree.map(jnp.ones_like, p), 2
  )
  chex.assert_trees_all_close(params, {'a': jnp.array([-1.1]), 'b': jnp.zeros(1)}, rtol=1e-6)
  # One rate per group that has one: the frozen group has none.
  chex.assert_trees_all_close(osd.current_learning_rate(state), {'decayed': jnp.float32(0.1)})


def test_missing_learning_rate_is_an_error():
  with pytest.raises(ValueError, match='holds no learning rate'):
    osd.current_learning_rate(optax.sgd(0.1).init(jnp.zeros(1)))


def test_flax_nnx_optimizer():
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(
    model, osd.step_decay_sgd(0.1, decay_factor=10.0, stage_length=2), wrt=nnx.Param
  )
  inputs = jnp.ones((4, 3))

  @nnx.jit
  def train_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean(m(inputs) ** 2))(model)
    optimizer.update(model, grads)
    return loss, osd.current_learning_rate(optimizer.opt_state)

  rates = [float(train_step(model, optimizer)[1]) for _ in range(5)]
  chex.assert_trees_all_close(rates, [0.1, 0.1, 0.01, 0.01, 0.001], rtol=1e-6)
  # nnx.Optimizer.step is uint32; the schedule reads it exactly: after 5
  # updates the sixth will use stage 5 // 2 = 2.
  chex.assert_type(optimizer.step[...], jnp.uint32)
  schedule = osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=2)
  chex.assert_trees_all_close(schedule(optimizer.step[...]), jnp.float32(1e-3), rtol=1e-6)


TRANSFORMATIONS = {
  'step_decay_sgd': lambda: osd.step_decay_sgd(
    0.1, decay_factor=10.0, stage_length=2, momentum=0.9
  ),
  'scale_by_tracked_learning_rate': lambda: osd.scale_by_tracked_learning_rate(0.1),
  'scale_by_cooldown': lambda: osd.scale_by_cooldown(0.1),
  'auto_step_decay': lambda: osd.auto_step_decay(0.1),
  'reduce_on_plateau': osd.reduce_on_plateau,
  'sample_iterate': lambda: osd.sample_iterate(0.1),
  'stage_average': lambda: osd.stage_average(
    osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=2)
  ),
  'suffix_average': lambda: osd.suffix_average(0),
}


@pytest.mark.parametrize('name', sorted(TRANSFORMATIONS))
def test_return_annotation_is_the_class_returned(name):
  hint = typing.get_type_hints(getattr(osd, name))['return']
  assert type(TRANSFORMATIONS[name]()) is hint

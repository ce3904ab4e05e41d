"""scale_by_cooldown and start_cooldown: cooldowns started on demand, branched from checkpoints."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_stepdecay as osd

PEAK, WARMUP = 0.3, 5
CURVATURE = jnp.array([0.5, 1.0, 2.0])
SHAPES = ('linear', 'cosine', '1-sqrt', 'step')
ENDS = ({}, {'end_ratio': 0.1}, {'end_value': 0.0123})


def gradients(params, t):
  """A noisy quadratic: updates depend on the whole trajectory, not just the step size."""
  noise = jax.random.normal(jax.random.fold_in(jax.random.key(0), t), (4,))
  return {'w': CURVATURE * params['w'] + noise[:3], 'b': params['b'] - 1.0 + noise[3]}


@functools.cache
def stepper(tx):
  """One jitted training step of ``tx``: (params, state, t) -> (params, state, updates)."""

  @jax.jit
  def step(params, state, t):
    updates, state = tx.update(gradients(params, t), state, params)
    return optax.apply_updates(params, updates), state, updates

  return step


def train(tx, params, state, first, last, *, start=None):
  """Steps ``first`` to ``last - 1``; ``start=(count, D, shape)`` starts a cooldown on the way."""
  step, log = stepper(tx), []
  for t in range(first, last):
    if start is not None and t == start[0]:
      state = osd.start_cooldown(state, decay_steps=start[1], shape=start[2])
    params, state, updates = step(params, state, t)
    log.append((updates, osd.current_learning_rate(state)))
  return params, state, log


def initial(tx):
  params = {'w': jnp.full(3, 2.0), 'b': jnp.zeros(())}
  return params, tx.init(params)


def fixed_wsd(stable_steps, decay_steps, shape, end):
  schedule = osd.wsd_schedule(
    PEAK,
    warmup_steps=WARMUP,
    stable_steps=stable_steps,
    decay_steps=decay_steps,
    decay_shape=shape,
    **end,
  )
  return osd.scale_by_tracked_learning_rate(schedule)


def on_demand(end):
  return osd.scale_by_cooldown(osd.wsd_schedule(PEAK, warmup_steps=WARMUP), **end)


@pytest.mark.parametrize('end', ENDS, ids=['zero', 'ratio', 'value'])
@pytest.mark.parametrize('shape', SHAPES)
def test_branched_cooldowns_equal_fixed_wsd_runs_update_by_update(shape, end):
  tx, branch_at = on_demand(end), 23
  params, state, stable_log = train(tx, *initial(tx), 0, branch_at)
  assert int(state.cooldown_start) == -1
  for decay_steps in (1, 7, 20):  # each branch starts from the same saved state
    stop = branch_at + decay_steps + 4
    cooled = train(tx, params, state, branch_at, stop, start=(branch_at, decay_steps, shape))
    fixed = fixed_wsd(branch_at - WARMUP, decay_steps, shape, end)
    reference = train(fixed, *initial(fixed), 0, stop)
    chex.assert_trees_all_equal(stable_log + cooled[2], reference[2])
    chex.assert_trees_all_equal(cooled[0], reference[0])
    assert int(cooled[1].cooldown_start) == branch_at
    assert int(cooled[1].cooldown_steps) == decay_steps


def test_constant_learning_rate_cools_down_like_wsd_without_warmup():
  tx = osd.scale_by_cooldown(PEAK, end_ratio=0.2)
  cooled = train(tx, *initial(tx), 0, 30, start=(10, 15, '1-sqrt'))
  fixed = osd.scale_by_tracked_learning_rate(
    osd.wsd_schedule(PEAK, stable_steps=10, decay_steps=15, end_ratio=0.2)
  )
  reference = train(fixed, *initial(fixed), 0, 30)
  chex.assert_trees_all_equal(cooled[2], reference[2])


def test_until_started_it_is_the_wrapped_schedule():
  base = osd.wsd_schedule(PEAK, warmup_steps=WARMUP)
  tx, plain = osd.scale_by_cooldown(base), osd.scale_by_tracked_learning_rate(base)
  ours, theirs = train(tx, *initial(tx), 0, 12), train(plain, *initial(plain), 0, 12)
  chex.assert_trees_all_equal(ours[2], theirs[2])
  assert int(ours[1].cooldown_start) == -1


def test_cooldown_values_count_by_count():
  tx = osd.scale_by_cooldown(1.0, end_value=0.2)
  state = tx.init(jnp.zeros(1))
  rates = []
  for t in range(8):
    if t == 2:
      state = osd.start_cooldown(state, decay_steps=4, shape='linear')
    _, state = tx.update(jnp.ones(1), state)
    rates.append(float(state.learning_rate))
  chex.assert_trees_all_close(rates, [1.0, 1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.2], rtol=1e-6)


def test_start_twice_keeps_the_first_cooldown():
  tx = osd.scale_by_cooldown(1.0)
  first = osd.start_cooldown(tx.init(jnp.zeros(1)), decay_steps=10, shape='cosine')
  _, later = tx.update(jnp.ones(1), first)
  again = osd.start_cooldown(later, decay_steps=3, shape='step')
  chex.assert_trees_all_equal(again, later)
  started = again.cooldown_start, again.cooldown_steps, again.cooldown_shape
  assert [int(v) for v in started] == [0, 10, 1]


def test_when_false_changes_nothing_and_traced_when_works_under_jit():
  tx = osd.scale_by_cooldown(1.0)
  state = tx.init(jnp.zeros(1))
  chex.assert_trees_all_equal(osd.start_cooldown(state, decay_steps=5, when=False), state)
  start = jax.jit(lambda s, fire: osd.start_cooldown(s, decay_steps=5, shape='linear', when=fire))
  chex.assert_trees_all_equal(start(state, jnp.bool_(False)), state)
  assert int(start(state, jnp.bool_(True)).cooldown_start) == 0


def test_many_branches_at_once_under_vmap():
  tx = on_demand({})
  params, state, _ = train(tx, *initial(tx), 0, 20)
  step = stepper(tx)

  def branch(decay_steps):
    def body(carry, t):
      params, state = carry
      params, state, _ = step(params, state, t)
      return (params, state), osd.current_learning_rate(state)

    start = osd.start_cooldown(state, decay_steps=decay_steps, shape='linear')
    return jax.lax.scan(body, (params, start), jnp.arange(20, 40))[1]

  lengths = [5, 10, 19]
  rates = jax.jit(jax.vmap(branch))(jnp.array(lengths))
  for i, length in enumerate(lengths):
    _, _, log = train(tx, params, state, 20, 40, start=(20, length, 'linear'))
    chex.assert_trees_all_close(rates[i], jnp.stack([rate for _, rate in log]), rtol=1e-6)
    assert float(rates[i, length]) == 0.0


def test_checkpoint_restored_mid_cooldown_continues_bit_identically(tmp_path):
  ocp = pytest.importorskip('orbax.checkpoint')
  tx = on_demand({'end_ratio': 0.1})
  params, state, _ = train(tx, *initial(tx), 0, 30, start=(20, 25, '1-sqrt'))
  checkpointer = ocp.StandardCheckpointer()
  tree = {'params': params, 'opt_state': state}
  checkpointer.save(tmp_path / 'mid_cooldown', tree)
  checkpointer.wait_until_finished()
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  restored = checkpointer.restore(tmp_path / 'mid_cooldown', target)
  assert isinstance(restored['opt_state'], osd.CooldownState)
  assert int(restored['opt_state'].cooldown_start) == 20
  uninterrupted = train(tx, params, state, 30, 50)
  resumed = train(tx, restored['params'], restored['opt_state'], 30, 50)
  chex.assert_trees_all_equal(resumed, uninterrupted)


def test_cooldowns_branched_from_a_restored_checkpoint_equal_fixed_wsd(tmp_path):
  ocp = pytest.importorskip('orbax.checkpoint')
  tx = on_demand({})
  params, state, log = train(tx, *initial(tx), 0, 15)
  checkpointer = ocp.StandardCheckpointer()
  tree = {'params': params, 'opt_state': state}
  checkpointer.save(tmp_path / 'stable', tree)
  checkpointer.wait_until_finished()
  target = jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
  for shape in ('cosine', '1-sqrt'):
    restored = checkpointer.restore(tmp_path / 'stable', target)
    cooled = train(tx, restored['params'], restored['opt_state'], 15, 30, start=(15, 12, shape))
    fixed = fixed_wsd(15 - WARMUP, 12, shape, {})
    reference = train(fixed, *initial(fixed), 0, 30)
    chex.assert_trees_all_equal(log + cooled[2], reference[2])


def test_multisteps_counts_accumulated_updates():
  inner = on_demand({'end_ratio': 0.5})
  tx = optax.MultiSteps(inner, every_k_schedule=3)
  params = {'w': jnp.ones(3), 'b': jnp.zeros(())}
  state, inner_state = tx.init(params), inner.init(params)
  update, inner_update = jax.jit(tx.update), jax.jit(inner.update)
  rates, expected = [], []
  for micro in range(30):
    if micro == 10:  # mid-accumulation: the cooldown starts with the 4th applied update
      state = osd.start_cooldown(state, decay_steps=5, shape='linear')
      inner_state = osd.start_cooldown(inner_state, decay_steps=5, shape='linear')
    grads = {'w': jnp.full(3, 1.0 + micro // 3), 'b': jnp.ones(())}
    updates, state = update(grads, state, params)
    if micro % 3 == 2:
      reference, inner_state = inner_update(grads, inner_state, params)
      chex.assert_trees_all_close(updates, reference, rtol=1e-6)
      rates.append(float(osd.current_learning_rate(state)))
      expected.append(float(osd.current_learning_rate(inner_state)))
  assert int(state.inner_opt_state.cooldown_start) == 3
  assert rates == expected and rates[-1] == float(np.float32(PEAK) * np.float32(0.5))


def test_inject_hyperparams_with_a_live_end_ratio():
  tx = optax.inject_hyperparams(osd.scale_by_cooldown)(learning_rate=PEAK, end_ratio=0.1)
  fixed = osd.scale_by_tracked_learning_rate(
    osd.wsd_schedule(PEAK, stable_steps=20, decay_steps=10, decay_shape='cosine', end_ratio=0.1)
  )
  params, state, log = train(tx, *initial(tx), 0, 40, start=(20, 10, 'cosine'))
  chex.assert_trees_all_equal(log, train(fixed, *initial(fixed), 0, 40)[2])
  assert int(state.inner_state.cooldown_start) == 20
  state.hyperparams['end_ratio'] = jnp.float32(0.5)
  _, state = tx.update(jax.tree.map(jnp.ones_like, params), state)
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(PEAK * 0.5))


def test_flax_nnx_optimizer():
  nnx = pytest.importorskip('flax.nnx')
  model = nnx.Linear(3, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, on_demand({}), wrt=nnx.Param)
  fixed = fixed_wsd(8 - WARMUP, 6, 'linear', {})
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  fixed_state = fixed.init(params)
  x = jnp.ones((4, 3))

  def loss(model):
    return jnp.mean(model(x) ** 2)

  @nnx.jit
  def step(model, optimizer):
    optimizer.update(model, nnx.grad(loss)(model))

  @nnx.jit
  def start(optimizer):
    optimizer.opt_state = osd.start_cooldown(optimizer.opt_state, decay_steps=6, shape='linear')

  for t in range(16):
    if t == 8:
      start(optimizer)
    step(model, optimizer)
    grads = jax.grad(lambda p: jnp.mean((x @ p['kernel'] + p['bias']) ** 2))(params)
    updates, fixed_state = fixed.update(grads, fixed_state, params)
    params = optax.apply_updates(params, updates)
    rate = osd.current_learning_rate(optimizer.opt_state)
    assert float(rate) == float(osd.current_learning_rate(fixed_state)), t
  assert int(optimizer.opt_state.cooldown_start[...]) == 8
  chex.assert_trees_all_close(nnx.to_pure_dict(nnx.state(model, nnx.Param)), params, rtol=1e-5)


def test_auto_step_decay_cut_starts_the_cooldown():
  detector = osd.auto_step_decay(1.0, decay_factor=1.0)
  tx = optax.chain(osd.scale_by_cooldown(0.1, flip_sign=False), detector)
  x = jnp.full(3, 10.0)
  noise = jax.random.normal(jax.random.key(1), (1500, 3))

  def body(carry, n):
    x, state = carry
    updates, state = tx.update(CURVATURE * x + n, state, x)
    state = osd.start_cooldown(state, decay_steps=300, shape='linear', when=state[1].stage > 0)
    return (x + updates, state), osd.current_learning_rate(state)

  (_, state), rates = jax.jit(lambda: jax.lax.scan(body, (x, tx.init(x)), noise))()
  start = int(state[0].cooldown_start)
  assert 96 <= start < 1200  # the diagnostic fired, and the cooldown began with the next update
  assert int(state[1].stage) >= 1
  rates = np.asarray(rates)
  chex.assert_trees_all_equal(rates[:start], np.float32(0.1))
  assert rates[start] == np.float32(0.1) > rates[start + 1] and rates[start + 300] == 0.0
  fixed = optax.chain(
    osd.scale_by_tracked_learning_rate(
      osd.wsd_schedule(0.1, stable_steps=start, decay_steps=300, decay_shape='linear'),
      flip_sign=False,
    ),
    detector,
  )

  def fixed_body(carry, n):
    x, state = carry
    updates, state = fixed.update(CURVATURE * x + n, state, x)
    return (x + updates, state), osd.current_learning_rate(state)

  (_, _), fixed_rates = jax.jit(lambda: jax.lax.scan(fixed_body, (x, fixed.init(x)), noise))()
  chex.assert_trees_all_equal(rates, fixed_rates)


@pytest.mark.parametrize(
  ('call', 'message'),
  [
    (lambda: osd.scale_by_cooldown(0.0), 'learning_rate must be > 0'),
    (lambda: osd.scale_by_cooldown(jnp.ones(2)), 'learning_rate must be a scalar'),
    (lambda: osd.scale_by_cooldown(1.0, end_value=2.0), 'end_value=2.0 must be <= learning_rate'),
    (lambda: osd.scale_by_cooldown(1.0, end_ratio=1.5), 'end_ratio must be <= 1, got 1.5'),
    (
      lambda: osd.scale_by_cooldown(1.0, end_value=0.1, end_ratio=0.1),
      'at most one of end_value, end_ratio',
    ),
    (
      lambda: osd.scale_by_cooldown(osd.multistep_decay_schedule(1.0, milestones=[3_000_000_000])),
      'stage boundaries beyond count 2147483647',
    ),
    (lambda: osd.start_cooldown(STATE, decay_steps=-1), 'decay_steps must be >= 0, got -1'),
    (lambda: osd.start_cooldown(STATE, decay_steps=2**31), 'decay_steps must be <= 2147483647'),
    (lambda: osd.start_cooldown(STATE, decay_steps=2.5), 'decay_steps must be an integer, got 2.5'),
    (
      lambda: osd.start_cooldown(STATE, decay_steps=5, shape='exponential'),
      "shape must be one of 'linear'",
    ),
    (
      lambda: osd.start_cooldown(optax.sgd(0.1).init(jnp.zeros(1)), decay_steps=5),
      'holds no CooldownState',
    ),
  ],
)
def test_bad_arguments_raise_value_error_naming_them(call, message):
  with pytest.raises(ValueError) as error:
    call()
  assert message in str(error.value)


STATE = osd.scale_by_cooldown(1.0).init(jnp.zeros(1))

"""auto_step_decay: cuts when the iterates are stationary, not before."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optax_stepdecay as osd

CURVATURE = jnp.linspace(0.2, 2.0, 20)
START = 10.0


def noisy_quadratic(tx, seed, num_steps, momentum=None, minimiser=0.0):
  """SGD on 0.5 * sum(a (x - m)^2) with N(0, 1) gradient noise, from m - START.

  Returns |x_t - m|^2 and the stage per step, and the final state.
  """
  if momentum is not None:
    tx = optax.chain(optax.trace(momentum), tx)
  x = jnp.full(CURVATURE.shape, minimiser - START)
  noise = jax.random.normal(jax.random.key(seed), (num_steps, *CURVATURE.shape))

  def body(carry, n):
    x, state = carry
    updates, state = tx.update(CURVATURE * (x - minimiser) + n, state, x)
    stage = optax.tree_utils.tree_get(state, 'stage')
    return (x + updates, state), (jnp.sum((x - minimiser) ** 2), stage)

  (_, state), (sq_norms, stages) = jax.jit(lambda s: jax.lax.scan(body, (x, s), noise))(tx.init(x))
  return np.asarray(sq_norms), np.asarray(stages), state


def expected_sq_norm(lr, t):
  """E|x_t|^2 of plain SGD at constant lr: the transient plus the noise floor."""
  contraction = (1 - lr * CURVATURE) ** (2 * t)
  floor = lr / (2 * CURVATURE - lr * CURVATURE**2)
  return float(jnp.sum(contraction * START**2 + (1 - contraction) * floor)), float(jnp.sum(floor))


@pytest.mark.parametrize('seed', range(6))
def test_first_cut_comes_after_the_noise_floor_is_reached(seed):
  lr = 0.02  # slow: the transient lasts about 1,300 steps, far beyond min_stage_length
  tx = osd.auto_step_decay(lr, decay_factor=2.0, test_interval=20, min_stage_length=200)
  _, stages, _ = noisy_quadratic(tx, seed, 6000)
  first_cut = int(np.argmax(stages > 0))
  assert stages[-1] > 0, 'never cut'
  expected, floor = expected_sq_norm(lr, first_cut)
  # Not before: at the cut, E|x|^2 is within 25% of the floor (it starts 7,000x above it).
  assert expected <= 1.25 * floor, (first_cut, expected, floor)
  # And not long after: within 2,500 steps of the point where it is within 5%.
  reached = next(t for t in range(0, 6000, 20) if expected_sq_norm(lr, t)[0] <= 1.05 * floor)
  assert first_cut <= reached + 2500, (first_cut, reached)


def test_cuts_keep_coming_as_each_floor_is_reached():
  tx = osd.auto_step_decay(0.2, decay_factor=2.0, test_interval=20, min_stage_length=200)
  sq_norms, _, state = noisy_quadratic(tx, 0, 4000)
  assert int(state.stage) >= 3
  # Each cut halves the step and so the noise floor.
  assert sq_norms[-200:].mean() < 0.5 * sq_norms[300:400].mean()


@pytest.mark.parametrize('seed', range(3))
def test_minimiser_far_from_the_origin(seed):
  # The first stage measures from the origin, 45 away from the minimiser: the
  # window's change of |x|^2 is noisy but its interval accounts for that.
  lr = 0.2
  tx = osd.auto_step_decay(lr, decay_factor=2.0, test_interval=20, min_stage_length=200)
  _, stages, state = noisy_quadratic(tx, seed, 4000, minimiser=START)
  first_cut = int(np.argmax(stages > 0))
  expected, floor = expected_sq_norm(lr, first_cut)
  assert expected <= 1.25 * floor, (first_cut, expected, floor)
  assert int(state.stage) >= 3


def test_later_stages_measure_from_their_first_iterate():
  tx = osd.auto_step_decay(0.2, decay_factor=2.0, test_interval=20, min_stage_length=200)
  x = jnp.full(CURVATURE.shape, START)
  state = tx.init(x)
  chex.assert_trees_all_equal(state.reference, jnp.zeros_like(x))
  update = jax.jit(tx.update)
  for i in range(2000):
    updates, state = update(CURVATURE * x + jax.random.normal(jax.random.key(i), x.shape), state, x)
    x = x + updates
    if int(state.stage) == 1:
      break
  assert int(state.stage) == 1 and int(state.stage_step) == 0
  chex.assert_trees_all_close(state.reference, x, rtol=1e-6)


def test_with_heavy_ball_momentum():
  # Momentum correlates consecutive updates: batches must be much longer than 1 / (1 - beta).
  tx = osd.auto_step_decay(0.02, decay_factor=2.0, test_interval=100, min_stage_length=1000)
  sq_norms, stages, _ = noisy_quadratic(tx, 0, 8000, momentum=0.9)
  first_cut = int(np.argmax(stages > 0))
  assert stages[-1] > 0
  # Before the cut |x|^2 had stopped falling: the last two windows of 400 steps agree.
  late, earlier = sq_norms[first_cut - 400 : first_cut], sq_norms[first_cut - 800 : first_cut - 400]
  assert 0.7 < late.mean() / earlier.mean() < 1.3, (first_cut, late.mean(), earlier.mean())
  assert late.mean() < 2e-3 * sq_norms[0]


def test_state_exposes_learning_rate_and_stage():
  tx = osd.auto_step_decay(0.2, decay_factor=2.0, test_interval=20, min_stage_length=200)
  _, stages, state = noisy_quadratic(tx, 2, 3000)
  assert int(state.stage) >= stages[-1] >= 1
  # learning_rate is the step of the most recent update: init / 2**(stage before it).
  chex.assert_trees_all_close(
    osd.current_learning_rate(state), jnp.float32(0.2 / 2.0 ** stages[-1]), rtol=1e-6
  )


def test_resumes_from_a_checkpoint(tmp_path):
  tx = osd.auto_step_decay(0.2, decay_factor=2.0, test_interval=10, min_stage_length=50)
  x = jnp.full(CURVATURE.shape, START)
  state = tx.init(x)
  noises = [jax.random.normal(jax.random.key(i), x.shape) for i in range(300)]
  update = jax.jit(tx.update)

  def train(x, state, steps):
    for noise in steps:
      updates, state = update(CURVATURE * x + noise, state, x)
      x = x + updates
    return x, state

  x_full, state_full = train(x, state, noises)
  x_half, state_half = train(x, state, noises[:137])
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / 'opt', state_half)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / 'opt', state_half)
  x_resumed, state_resumed = train(x_half, restored, noises[137:])
  chex.assert_trees_all_equal(x_resumed, x_full)
  chex.assert_trees_all_equal(state_resumed, state_full)
  assert int(state_full.stage) > 0


def test_needs_params():
  tx = osd.auto_step_decay(0.1, test_interval=5, min_stage_length=10)
  with pytest.raises(ValueError, match='needs params'):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    (dict(init_value=0.0), 'init_value must be > 0, got 0.0'),
    (dict(decay_factor=0.5), 'decay_factor must be >= 1, got 0.5'),
    (dict(test_interval=0), 'test_interval must be >= 1, got 0'),
    (dict(min_stage_length=15), 'min_stage_length must be >= 20, got 15'),
    (dict(confidence=1.0), 'confidence must be in (0, 1), got 1.0'),
    (dict(tolerance=0.0), 'tolerance must be > 0, got 0.0'),
    (dict(max_batches=3), 'max_batches must be >= 4, got 3'),
  ],
)
def test_bad_arguments(kwargs, message):
  arguments = dict(init_value=0.1, test_interval=10, min_stage_length=100) | kwargs
  with pytest.raises(ValueError) as error:
    osd.auto_step_decay(**arguments)
  assert message in str(error.value)


@pytest.mark.parametrize('momentum', [None, 0.9])
def test_batch_end_sums_equal_the_sums_of_the_per_update_statistic(momentum):
  # The transform sums z only at batch ends, where it telescopes; this recomputes the
  # per-update z = 2<x - c, u> + |u|^2 and v = |u|^2 in float64 from the same run.
  interval = 20
  tx = osd.auto_step_decay(0.2, decay_factor=2.0, test_interval=interval, min_stage_length=200)
  if momentum is not None:
    tx = optax.chain(optax.trace(momentum), tx)
  x = jnp.full(CURVATURE.shape, -START)
  noise = jax.random.normal(jax.random.key(0), (3000, *CURVATURE.shape))

  def body(carry, n):
    x, state = carry
    auto = osd._state.find(state, [osd.AutoStepDecayState])[0]
    updates, state = tx.update(CURVATURE * x + n, state, x)
    after = osd._state.find(state, [osd.AutoStepDecayState])[0]
    return (x + updates, state), (x, updates, auto.reference, after.stage_step, after.running)

  trace = jax.jit(lambda s: jax.lax.scan(body, (x, s), noise)[1])(tx.init(x))
  xs, us, references, stage_steps, running = (np.asarray(a, np.float64) for a in trace)
  z = 2 * np.sum((xs - references) * us, axis=1) + np.sum(us**2, axis=1)
  v = np.sum(us**2, axis=1)
  sums, num_cuts = np.zeros(2), 0
  for t in range(len(z)):
    sums += z[t], v[t]
    if stage_steps[t] == 0:  # a cut: the transform reset its sums after this update
      num_cuts += 1
      sums[:] = 0
      continue
    chex.assert_trees_all_close(running[t, 1], sums[1], rtol=1e-5)
    if stage_steps[t] % interval == 0:
      chex.assert_trees_all_close(running[t, 0], sums[0], rtol=1e-4, atol=1e-5 * sums[1])
  assert num_cuts >= 3

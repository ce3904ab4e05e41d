"""auto_step_decay: cuts when the distance from the restart point stops growing, not before."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optax_stepdecay as osd
from optax_stepdecay import _auto

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


def cut_steps(stages):
  """The updates (counted from 1) after which the stage changed."""
  return [int(t) + 1 for t in np.flatnonzero(np.diff(np.r_[0, stages]))]


@pytest.mark.parametrize('seed', range(4))
def test_first_cut_comes_once_most_of_the_way_is_travelled(seed):
  # Slow: the distance grows for hundreds of updates. The diagnostic does not wait for the
  # flattest direction (it holds little of the distance), but for most of the way.
  lr = 0.02
  _, stages, _ = noisy_quadratic(osd.auto_step_decay(lr), seed, 6000)
  first_cut = int(np.argmax(stages > 0))
  assert stages[-1] > 0, 'never cut'
  expected, _ = expected_sq_norm(lr, first_cut)
  assert expected <= 0.1 * START**2 * CURVATURE.size, (first_cut, expected)
  # Nor later than needed: when the cut came, E|x|^2 had fallen by half less than
  # three checks (a factor 1.5^3) before.
  assert expected_sq_norm(lr, first_cut / 3.4)[0] > 0.1 * START**2 * CURVATURE.size


@pytest.mark.parametrize('seed', range(3))
def test_stages_lengthen_as_the_step_shrinks(seed):
  # Halving the step doubles the time to equilibrate: the cuts spread out like 1/t.
  _, stages, state = noisy_quadratic(osd.auto_step_decay(0.2), seed, 20_000)
  cuts = cut_steps(stages)
  assert len(cuts) >= 4, cuts
  lengths = np.diff(np.r_[0, cuts])
  assert lengths[-1] > 4 * lengths[0], cuts
  assert int(state.stage) == len(cuts)


def test_cuts_lower_the_noise_floor():
  sq_norms, stages, state = noisy_quadratic(osd.auto_step_decay(0.2), 0, 8000)
  assert int(state.stage) >= 3
  first_cut = int(np.argmax(stages > 0))
  # Each cut halves the step and so the noise floor.
  before = sq_norms[first_cut // 2 : first_cut].mean()
  assert sq_norms[-1000:].mean() < 0.5 * before, (sq_norms[-1000:].mean(), before)


@pytest.mark.parametrize('seed', range(3))
def test_minimiser_far_from_the_origin(seed):
  # Distances are from the restart point, not from the origin: where the minimiser is
  # does not matter.
  lr = 0.2
  _, near, _ = noisy_quadratic(osd.auto_step_decay(lr), seed, 3000)
  _, far, _ = noisy_quadratic(osd.auto_step_decay(lr), seed, 3000, minimiser=1e3)
  chex.assert_trees_all_equal(cut_steps(near)[:2], cut_steps(far)[:2])


def test_checks_follow_the_geometric_grid_and_restart_after_a_cut():
  # No bounds on the growth of the count between cuts: every cut is the diagnostic's.
  tx = osd.auto_step_decay(0.2, first_check=8, check_growth=1.5, min_growth=1.0,
                           fallback_growth=None)  # fmt: skip
  x = jnp.full(CURVATURE.shape, START)
  state = tx.init(x)
  update = jax.jit(tx.update)
  checks, stages = [], []
  for i in range(400):
    grad = CURVATURE * x + jax.random.normal(jax.random.key(i), x.shape)
    updates, new = update(grad, state, x)
    x = x + updates
    if int(new.stage) > int(state.stage):  # a cut: the stage's last check
      checks.append((int(state.stage), int(state.stage_step) + 1))
    elif int(new.last_check) != int(state.last_check):
      checks.append((int(new.stage), int(new.stage_step)))
    stages.append(int(new.stage))
    state = new
  grid = [8, 12, 18, 27, 41, 62, 93, 140, 210, 315]
  for stage in range(max(stages)):
    stage_checks = [n for s, n in checks if s == stage]
    assert stage_checks == grid[: len(stage_checks)], (stage, stage_checks)
    assert len(stage_checks) >= 2  # a cut needs a slope: two checks at least, the last cuts
  assert max(stages) >= 1


def test_a_cut_restarts_from_the_iterate_after_it():
  tx = osd.auto_step_decay(0.2)
  x = jnp.full(CURVATURE.shape, START)
  state = tx.init(x)
  chex.assert_trees_all_equal(state.reference, x)
  update = jax.jit(tx.update)
  for i in range(2000):
    updates, state = update(CURVATURE * x + jax.random.normal(jax.random.key(i), x.shape), state, x)
    x = x + updates
    if int(state.stage) == 1:
      break
  assert int(state.stage) == 1 and int(state.stage_step) == 0
  assert int(state.next_check) == 64 and int(state.last_check) == 0
  assert int(state.last_cut) == int(state.count) == i + 1
  chex.assert_trees_all_close(state.reference, x, rtol=1e-6)


@pytest.mark.parametrize(
  ('power', 'threshold', 'stalled'),
  [(0.5, 0.6, True), (1.0, 0.6, False), (2.0, 0.6, False), (0.0, 0.0, False), (0.0, 0.1, True)],
)
def test_stalled_when_the_log_log_slope_is_below_the_threshold(power, threshold, stalled):
  n, m = jnp.int32(27), jnp.int32(18)
  distance = 3.0 * n.astype(jnp.float32) ** power
  previous = 3.0 * m.astype(jnp.float32) ** power
  assert bool(_auto.is_stalled(distance, previous, n, m, jnp.float32(threshold))) is stalled


def test_no_slope_before_the_second_check_and_no_movement_is_no_evidence():
  one = jnp.float32(1.0)
  assert not bool(_auto.is_stalled(one, jnp.float32(0.0), jnp.int32(8), jnp.int32(0), one))
  zero = jnp.float32(0.0)
  assert not bool(_auto.is_stalled(zero, zero, jnp.int32(12), jnp.int32(8), one))


def test_next_check_grows_by_the_factor_and_saturates():
  growth = jnp.float32(1.5)
  assert [int(_auto.next_check_after(jnp.int32(n), growth)) for n in (1, 2, 8, 27)] == [
    2,
    3,
    12,
    41,
  ]
  assert int(_auto.next_check_after(jnp.int32(2**31 - 2), growth)) == 2**31 - 1
  assert int(_auto.next_check_after(jnp.int32(5), jnp.float32(1.01))) == 6


def test_fallback_cuts_when_the_count_grows_by_its_factor_after_the_first_cut():
  # A constant gradient: the iterates travel in a straight line (slope 2) and never stall.
  # Threshold 3 cuts at the first slope (update 12); then, at threshold -10, only the
  # fallback cuts: at counts 2 x 12, 2 x 24, 2 x 48.
  tx = optax.inject_hyperparams(osd.auto_step_decay)(
    init_value=0.1, first_check=8, slope_threshold=3.0, min_growth=1.0, fallback_growth=2.0
  )
  params = jnp.zeros(2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  cuts = []
  for t in range(1, 120):
    updates, new = update(jnp.ones(2), state, params)
    params = params + updates
    if int(new.inner_state.stage) > int(state.inner_state.stage):
      cuts.append(t)
      new.hyperparams['slope_threshold'] = jnp.float32(-10.0)
    state = new
  assert cuts == [12, 24, 48, 96]


def test_without_a_first_cut_the_fallback_waits():
  tx = osd.auto_step_decay(0.1, fallback_growth=1.5)
  params = jnp.zeros(2)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for _ in range(300):
    updates, state = update(jnp.ones(2), state, params)  # drift: never stalls
    params = params + updates
  assert int(state.stage) == 0


def test_with_heavy_ball_momentum():
  sq_norms, stages, _ = noisy_quadratic(osd.auto_step_decay(0.02), 0, 8000, momentum=0.9)
  first_cut = int(np.argmax(stages > 0))
  assert stages[-1] >= 2, cut_steps(stages)
  # Before the first cut |x|^2 had reached its floor: far below its start.
  assert sq_norms[first_cut - 20 : first_cut].mean() < 1e-2 * sq_norms[0]
  assert sq_norms[-500:].mean() < sq_norms[first_cut // 2 : first_cut].mean()


def test_state_exposes_learning_rate_and_stage():
  _, stages, state = noisy_quadratic(osd.auto_step_decay(0.2, decay_factor=3.0), 2, 3000)
  assert int(state.stage) >= stages[-1] >= 1
  # learning_rate is the step of the most recent update: init / 3**(stage before it).
  chex.assert_trees_all_close(
    osd.current_learning_rate(state), jnp.float32(0.2 / 3.0 ** stages[-1]), rtol=1e-6
  )


def test_min_value_floors_the_step():
  _, _, state = noisy_quadratic(osd.auto_step_decay(0.2, min_value=0.1), 0, 3000)
  assert int(state.stage) >= 2
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.1))


def test_resumes_from_a_checkpoint(tmp_path):
  tx = osd.auto_step_decay(0.2)
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
  tx = osd.auto_step_decay(0.1)
  with pytest.raises(ValueError, match='needs params'):
    tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    (dict(init_value=0.0), 'init_value must be > 0, got 0.0'),
    (dict(decay_factor=0.5), 'decay_factor must be >= 1, got 0.5'),
    (dict(first_check=0), 'first_check must be >= 1, got 0'),
    (dict(check_growth=1.0), 'check_growth must be > 1, got 1.0'),
    (dict(slope_threshold=float('nan')), 'slope_threshold must be finite, got nan'),
    (dict(fallback_growth=1.0), 'fallback_growth must be > 1 or None, got 1.0'),
    (dict(fallback_growth=float('nan')), 'fallback_growth must be finite, got nan'),
    (dict(fallback_growth=-float('inf')), 'fallback_growth must be finite, got -inf'),
  ],
)
def test_bad_arguments(kwargs, message):
  arguments = dict(init_value=0.1) | kwargs
  with pytest.raises(ValueError) as error:
    osd.auto_step_decay(**arguments)
  assert message in str(error.value)

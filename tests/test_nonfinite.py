"""Non-finite gradients in auto_step_decay, non-finite metrics in reduce_on_plateau."""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_stepdecay as osd

CURVATURE = jnp.linspace(0.2, 2.0, 20)
BAD_STEP = 63  # the 64th update: the first check, before the first possible cut (at 96)


def auto(lr=0.2, **options):
  return osd.auto_step_decay(lr, decay_factor=2.0, **options)


def train(tx, num_steps, bad_value=None, bad_step=BAD_STEP, *, keep_finite_params=False):
  """SGD on a noisy quadratic from x = 10; the gradient of bad_step is multiplied by bad_value.

  keep_finite_params: the loop drops a non-finite update itself (but keeps the new state).
  Returns the final state and the auto_step_decay stage after each update.
  """
  x = jnp.full(CURVATURE.shape, 10.0)
  noise = jax.random.normal(jax.random.key(0), (num_steps, *CURVATURE.shape))
  factor = 1.0 if bad_value is None else bad_value

  def body(carry, inputs):
    x, state = carry
    t, n = inputs
    grad = CURVATURE * x + n
    grad = jnp.where(t == bad_step, grad * factor, grad)
    updates, state = tx.update(grad, state, x)
    new_x = x + updates
    if keep_finite_params:
      new_x = jnp.where(jnp.all(jnp.isfinite(updates)), new_x, x)
    return (new_x, state), optax.tree_utils.tree_get(state, 'stage')

  steps = (jnp.arange(num_steps), noise)
  (_, state), stages = jax.jit(lambda s: jax.lax.scan(body, (x, s), steps))(tx.init(x))
  return state, np.asarray(stages)


@pytest.mark.parametrize('bad_value', [math.nan, math.inf, -math.inf])
def test_nonfinite_gradient_is_left_out_and_later_cuts_still_come(bad_value):
  state, stages = train(auto(), 4000, bad_value, keep_finite_params=True)
  assert int(state.num_nonfinite) == 1
  assert np.isfinite(state.distance) and np.all(np.isfinite(state.reference))
  assert stages[BAD_STEP] == 0
  assert int(state.stage) >= 3, stages[-1]
  clean, _ = train(auto(), 4000)
  assert abs(int(state.stage) - int(clean.stage)) <= 1


@pytest.mark.parametrize('bad_value', [math.nan, math.inf])
def test_nonfinite_gradient_under_apply_if_finite_leaves_cuts_intact(bad_value):
  tx = optax.apply_if_finite(auto(), max_consecutive_errors=5)
  state, stages = train(tx, 4000, bad_value)
  assert int(state.total_notfinite) == 1  # apply_if_finite dropped it: auto never saw it
  assert int(state.inner_state.num_nonfinite) == 0
  assert stages[BAD_STEP] == 0 and int(state.inner_state.stage) >= 3


def test_documented_apply_if_finite_composition_with_momentum():
  # The composition the guide shows: momentum, then auto_step_decay, all guarded.
  tx = optax.apply_if_finite(
    optax.chain(
      optax.trace(0.9),
      osd.auto_step_decay(0.02, decay_factor=2.0),
    ),
    max_consecutive_errors=5,
  )
  state, stages = train(tx, 8000, math.nan, bad_step=500)
  assert int(state.total_notfinite) == 1
  assert stages[500] == stages[499] and stages[-1] >= 1  # no cut on the skipped update
  assert np.isfinite(float(osd.current_learning_rate(state)))


def test_no_cut_on_a_nonfinite_update():
  _, clean = train(auto(), 2000)
  first_cut = int(np.argmax(clean > 0))  # the update after which the clean run cut
  assert first_cut > 0
  state, stages = train(auto(), 2000, math.nan, bad_step=first_cut, keep_finite_params=True)
  assert stages[first_cut] == 0  # the test may pass there, but the update was NaN
  assert stages[-1] >= 1
  assert np.all(np.isfinite(state.reference))


def test_overflowing_distance_is_left_out_and_counted():
  # A finite update whose square overflows float32: |x - r|^2 = (0.1 * 1e30)^2 = inf.
  tx = osd.auto_step_decay(0.1, first_check=1)
  params = jnp.zeros(3)
  updates, state = tx.update(jnp.full(3, 1e30), tx.init(params), params)
  assert np.all(np.isfinite(updates))
  assert int(state.num_nonfinite) == 1
  assert float(state.distance) == 0.0 and int(state.last_check) == 0  # nothing recorded
  assert int(state.stage_step) == 1  # the update still counts as a step of the stage


def plateau_scales(metrics, **options):
  tx = osd.reduce_on_plateau(**options)
  state = tx.init(jnp.zeros(1))
  scales = []
  for metric in metrics:
    updates, state = jax.jit(tx.update)(jnp.ones(1), state, value=metric)
    scales.append(float(updates[0]))
  return scales, state


def test_plateau_default_ignores_nonfinite_metrics():
  assert inspect.signature(osd.reduce_on_plateau).parameters['nonfinite'].default == 'ignore'
  metrics = [3.0, math.nan, math.inf, -math.inf, math.nan, 2.0]
  scales, state = plateau_scales(metrics, decay_factor=2.0, patience=0)
  assert scales == [1.0] * 6
  assert int(state.num_nonfinite) == 4
  assert float(state.best_value) == 2.0


def test_plateau_bad_counts_nonfinite_metrics_as_bad_evaluations():
  metrics = [3.0, math.nan, math.inf, -math.inf, 2.0]
  scales, state = plateau_scales(metrics, decay_factor=2.0, patience=0, nonfinite='bad')
  # Each non-finite metric is a bad evaluation (a cut with patience 0), as torch does for NaN;
  # -inf never becomes the best, so 2.0 still improves on 3.0.
  assert scales == [1.0, 0.5, 0.25, 0.125, 0.125]
  assert int(state.num_nonfinite) == 3
  assert float(state.best_value) == 2.0


def test_plateau_nonfinite_in_max_mode():
  metrics = [1.0, math.nan, 0.5]
  ignored, _ = plateau_scales(metrics, decay_factor=2.0, patience=0, mode='max')
  bad, _ = plateau_scales(metrics, decay_factor=2.0, patience=0, mode='max', nonfinite='bad')
  assert ignored == [1.0, 1.0, 0.5]
  assert bad == [1.0, 0.5, 0.25]


@pytest.mark.parametrize(
  ('nonfinite', 'expected'),
  [
    # ignore: the evaluations see means 1.0 (the finite one) and 1.0: the second is bad.
    ('ignore', [1.0, 1.0, 1.0, 0.5]),
    # bad: the first evaluation's mean is NaN, a bad one; the second improves on +inf.
    ('bad', [1.0, 0.5, 0.5, 0.5]),
  ],
)
def test_plateau_accumulation_with_a_nonfinite_metric(nonfinite, expected):
  metrics = [1.0, math.nan, 1.0, 1.0]
  scales, _ = plateau_scales(
    metrics, decay_factor=2.0, patience=0, accumulation_size=2, nonfinite=nonfinite
  )
  assert scales == expected


def test_plateau_evaluation_of_only_nonfinite_metrics_does_not_happen():
  # With nonfinite='ignore' there is nothing to evaluate: no bad evaluation, no cooldown step.
  tx = osd.reduce_on_plateau(decay_factor=2.0, patience=0, cooldown=1, accumulation_size=2)
  state = tx.init(jnp.zeros(1))
  for metric in [5.0, 5.0, 5.0, 5.0]:  # best 5, then a bad evaluation: cut, cooldown 1
    _, state = tx.update(jnp.ones(1), state, value=metric)
  assert int(state.num_cuts) == 1 and int(state.cooldown_count) == 1
  for metric in [math.nan, math.nan]:
    _, state = tx.update(jnp.ones(1), state, value=metric)
  assert int(state.cooldown_count) == 1 and int(state.plateau_count) == 0
  assert int(state.count) == 0 and int(state.accumulated_finite) == 0
  assert int(state.num_nonfinite) == 2


def test_plateau_metric_must_be_a_scalar():
  tx = osd.reduce_on_plateau()
  with pytest.raises(ValueError, match=r'value must be a scalar metric, got shape \(2,\)'):
    tx.update(jnp.ones(1), tx.init(jnp.zeros(1)), value=jnp.ones(2))

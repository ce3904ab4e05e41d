"""reduce_on_plateau: torch's ReduceLROnPlateau semantics, fixed for negative metrics."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

import optax_stepdecay as osd
from tests.conftest import oracle


def scales(metrics, **options):
  """The scale applied to each call's updates, for a sequence of metrics."""
  tx = osd.reduce_on_plateau(**options)
  state = tx.init(jnp.zeros(1))
  update = jax.jit(tx.update)
  out = []
  for metric in metrics:
    updates, state = update(jnp.ones(1), state, value=metric)
    out.append(float(updates[0]))
  return out


def test_patience_zero_cuts_on_every_evaluation_without_improvement():
  assert scales([5.0, 4.0, 4.0, 3.0, 3.0, 3.0], decay_factor=2.0, patience=0) == [
    1.0,
    1.0,
    0.5,
    0.5,
    0.25,
    0.125,
  ]


def test_flat_metric_cuts_after_patience_plus_one_bad_evaluations():
  result = scales([1.0] * 9, decay_factor=10.0, patience=3)
  chex.assert_trees_all_close(result, [1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.01], rtol=1e-6)


def test_negative_metrics_plateau_and_improve():
  # torch's relative test best * (1 - threshold) never lets a flat negative metric plateau
  # the way a positive one does; ours uses |best|.
  flat = scales([-5.0] * 4, decay_factor=2.0, patience=1, threshold=0.1)
  assert flat == [1.0, 1.0, 0.5, 0.5]
  improving = scales([-5.0, -6.0, -7.0, -8.0], decay_factor=2.0, patience=0, threshold=0.1)
  assert improving == [1.0] * 4
  barely = scales([-5.0, -5.1, -5.2], decay_factor=2.0, patience=0, threshold=0.1)
  assert barely == [1.0, 0.5, 0.25]  # 0.1 * |best| = 0.5 is the least improvement


def test_max_mode_and_abs_threshold():
  result = scales([0.5, 0.7, 0.75, 0.9], mode='max', threshold=0.1, threshold_mode='abs',
                  decay_factor=2.0, patience=0)  # fmt: skip
  assert result == [1.0, 1.0, 0.5, 0.5]


def test_cooldown_ignores_bad_evaluations():
  result = scales([1.0] * 8, decay_factor=2.0, patience=0, cooldown=2)
  assert result == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_min_scale_floors_the_scale():
  result = scales([1.0] * 6, decay_factor=10.0, patience=0, min_scale=0.05)
  chex.assert_trees_all_close(result, [1, 0.1, 0.05, 0.05, 0.05, 0.05], rtol=1e-6)


def test_accumulation_averages_metrics_before_one_evaluation():
  # Evaluations see means 2.0, 2.0, 1.0: the second is not an improvement.
  result = scales([3.0, 1.0, 2.0, 2.0, 1.0, 1.0], decay_factor=2.0, patience=0,
                  accumulation_size=2)  # fmt: skip
  assert result == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5]


def torch_scales(metrics, **options):
  torch = oracle('torch')
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([param], lr=1.0)
  factor = 1 / options.pop('decay_factor')
  scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
    optimizer, factor=factor, eps=0.0, **options
  )
  out = []
  for metric in metrics:
    scheduler.step(metric)
    out.append(optimizer.param_groups[0]['lr'])
  return out


@pytest.mark.parametrize(
  ('mode', 'threshold_mode', 'patience', 'cooldown'),
  list(itertools.product(['min', 'max'], ['rel', 'abs'], [0, 3], [0, 2])),
)
def test_parity_with_torch_on_positive_metrics(mode, threshold_mode, patience, cooldown):
  rng = np.random.default_rng(patience * 7 + cooldown)
  walk = 10 + np.cumsum(rng.normal(-0.05 if mode == 'min' else 0.05, 0.3, 120))
  metrics = [float(np.float32(v)) for v in np.abs(walk) + 1]  # no ties at the threshold
  options = dict(mode=mode, threshold_mode=threshold_mode, patience=patience,
                 cooldown=cooldown, threshold=0.01, decay_factor=2.0)  # fmt: skip
  expected = torch_scales(metrics, **dict(options))
  chex.assert_trees_all_close(scales(metrics, **options), expected, rtol=1e-6)


def test_scales_multiply_with_a_schedule_in_a_chain():
  tx = optax.chain(
    osd.step_decay_sgd(1.0, decay_factor=10.0, stage_length=2),
    osd.reduce_on_plateau(decay_factor=2.0, patience=0),
  )
  params = jnp.zeros(1)
  state = tx.init(params)
  for metric in [3.0, 3.0, 3.0]:
    updates, state = jax.jit(tx.update)(jnp.ones(1), state, params, value=metric)
  # third update: stage 1 of the schedule (0.1), two cuts of the plateau rule (0.25)
  chex.assert_trees_all_close(updates, jnp.array([-0.025]))
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.025))


def test_after_a_warmup_schedule():
  warmup = osd.with_linear_warmup(osd.stagewise_schedule([], values=[1.0]), warmup_steps=2)
  tx = optax.chain(optax.sgd(warmup), osd.reduce_on_plateau(decay_factor=2.0, patience=0))
  state = tx.init(jnp.zeros(1))
  got = []
  for metric in [5.0, 4.0, 4.0, 4.0]:
    updates, state = tx.update(jnp.ones(1), state, jnp.zeros(1), value=metric)
    got.append(float(updates[0]))
  assert got == [0.0, -0.5, -0.5, -0.25]


def test_missing_metric_is_an_error():
  tx = osd.reduce_on_plateau()
  with pytest.raises(ValueError, match='needs the metric'):
    tx.update(jnp.ones(1), tx.init(jnp.zeros(1)))


def test_state_survives_a_checkpoint(tmp_path):
  tx = osd.reduce_on_plateau(decay_factor=2.0, patience=1)
  state = tx.init(jnp.zeros(1))
  for metric in [3.0, 3.0, 3.0, 2.0]:
    _, state = tx.update(jnp.ones(1), state, value=metric)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / 'state', state)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / 'state', state)
  assert isinstance(restored, osd.ReduceOnPlateauState)
  chex.assert_trees_all_equal(restored, state)
  continued = [tx.update(jnp.ones(1), s, value=2.0)[0] for s in (state, restored)]
  chex.assert_trees_all_equal(*continued)


@pytest.mark.parametrize(
  ('kwargs', 'message'),
  [
    (dict(decay_factor=0.1), 'pass decay_factor=10'),
    (dict(patience=-1), 'patience must be >= 0, got -1'),
    (dict(mode='lowest'), "mode must be 'min' or 'max', got 'lowest'"),
    (dict(threshold=-0.1), 'threshold must be >= 0, got -0.1'),
    (dict(threshold_mode='ratio'), "threshold_mode must be 'rel' or 'abs', got 'ratio'"),
    (dict(cooldown=1.5), 'cooldown must be an integer, got 1.5'),
    (dict(min_scale=2.0), 'min_scale must be <= 1, got 2.0'),
    (dict(accumulation_size=0), 'accumulation_size must be >= 1, got 0'),
  ],
)
def test_bad_arguments(kwargs, message):
  with pytest.raises(ValueError) as error:
    osd.reduce_on_plateau(**kwargs)
  assert message in str(error.value)

"""Output rules: the sampled iterate's distribution, and stage / suffix averages."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from scipy import stats

import optax_stepdecay as osd

SCHEDULE = osd.step_decay_schedule(
  1.0, decay_factor=2.0, stage_length=4
)  # 1, 1, 1, 1, 0.5, ..., 0.25, ...
NUM_STEPS = 12


def sampled_steps(weighting, seeds):
  """The step index each seeded run samples; params count the steps (x_t = t)."""

  def run(seed):
    tx = osd.sample_iterate(SCHEDULE, weighting=weighting, seed=seed)
    params = jnp.zeros([])
    state = tx.init(params)

    def body(carry, _):
      params, state = carry
      updates, state = tx.update(jnp.ones([]), state, params)
      return (params + updates, state), None

    (_, state), _ = jax.lax.scan(body, (params, state), None, length=NUM_STEPS)
    return osd.output_params(state), state.sampled_step

  iterates, steps = jax.jit(jax.vmap(run))(seeds)
  chex.assert_trees_all_equal(iterates, steps)  # the kept point is x_t = t
  return np.asarray(steps)


@pytest.mark.parametrize(
  ('weighting', 'weight'), [('inverse', lambda r: 1 / r), ('proportional', lambda r: r)]
)
def test_sampling_distribution_chi_square(weighting, weight):
  seeds = jnp.arange(20_000)
  counts = np.bincount(sampled_steps(weighting, seeds), minlength=NUM_STEPS)
  rates = np.array([float(SCHEDULE(t)) for t in range(NUM_STEPS)])
  expected = weight(rates) / weight(rates).sum() * len(seeds)
  assert stats.chisquare(counts, expected).pvalue > 1e-3
  # And a wrong law is rejected, so the test has power.
  other = weight(1 / rates) / weight(1 / rates).sum() * len(seeds)
  assert stats.chisquare(counts, other).pvalue < 1e-6


def test_sampled_iterate_in_a_chain_with_nnx_style_params():
  tx = optax.chain(
    osd.step_decay_sgd(0.1, decay_factor=2.0, stage_length=4), osd.sample_iterate(SCHEDULE)
  )
  params = {'w': jnp.ones((2, 3)), 'b': jnp.zeros(3)}
  state = tx.init(params)
  for _ in range(5):
    updates, state = jax.jit(tx.update)(params, state, params)
    params = optax.apply_updates(params, updates)
  chex.assert_trees_all_equal_shapes(osd.output_params(state), params)


def test_zero_step_sizes_get_no_weight():
  warmup = osd.with_linear_warmup(osd.stagewise_schedule([], values=[1.0]), warmup_steps=1)
  tx = osd.sample_iterate(warmup, weighting='inverse')
  state = tx.init(jnp.zeros([]))
  _, state = tx.update(jnp.zeros([]), state, jnp.array(5.0))  # step 0 has eta = 0
  assert float(state.total_weight) == 0.0
  _, state = tx.update(jnp.zeros([]), state, jnp.array(7.0))
  assert float(osd.output_params(state)) == 7.0


def run_average(tx, num_steps):
  params = jnp.zeros([])
  state = tx.init(params)
  outputs = []
  for _ in range(num_steps):
    updates, state = tx.update(jnp.ones([]), state, params)  # x_{t+1} = t + 1
    params = params + updates
    outputs.append(float(osd.output_params(state)))
  return outputs


def test_stage_average_restarts_at_each_cut():
  outputs = run_average(osd.stage_average(SCHEDULE), 10)
  # stage 0 averages 1..4, stage 1 averages 5..8, stage 2 starts at 9
  assert outputs == [1.0, 1.5, 2.0, 2.5, 5.0, 5.5, 6.0, 6.5, 9.0, 9.5]


def test_suffix_average_starts_at_start_step():
  outputs = run_average(osd.suffix_average(3), 7)
  assert outputs == [1.0, 2.0, 3.0, 4.0, 4.5, 5.0, 5.5]


def test_sampler_state_resumes_from_a_checkpoint(tmp_path):
  tx = osd.sample_iterate(SCHEDULE, seed=7)
  params = jnp.arange(3.0)
  state = tx.init(params)
  for _ in range(5):
    _, state = tx.update(jnp.ones(3), state, params)
    params = params + 1
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(tmp_path / 's', state)
  with ocp.StandardCheckpointer() as checkpointer:
    restored = checkpointer.restore(tmp_path / 's', state)
  chex.assert_trees_all_equal(
    tx.update(jnp.ones(3), restored, params), tx.update(jnp.ones(3), state, params)
  )


def test_bad_arguments():
  with pytest.raises(
    ValueError, match="weighting must be 'inverse' or 'proportional', got 'uniform'"
  ):
    osd.sample_iterate(0.1, weighting='uniform')
  with pytest.raises(ValueError, match='start_step must be >= 0, got -1'):
    osd.suffix_average(-1)
  with pytest.raises(ValueError, match='schedule must be a schedule of this package'):
    osd.stage_average(optax.constant_schedule(0.1))
  with pytest.raises(ValueError, match='holds no sample_iterate'):
    osd.output_params(optax.sgd(0.1).init(jnp.zeros(1)))

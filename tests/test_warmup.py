"""with_linear_warmup: a linear ramp, then the wrapped schedule shifted by the warmup."""

import chex
import jax.numpy as jnp
import numpy as np
import optax

import optax_stepdecay as osd


class WarmupTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_ramp_then_shifted_schedule(self):
    base = osd.step_decay_schedule(1.0, decay_factor=10.0, stage_length=4)
    schedule = self.variant(osd.with_linear_warmup(base, warmup_steps=4, init_value=0.2))
    values = schedule(jnp.arange(12))
    expected = [0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1]
    chex.assert_shape(values, (12,))
    chex.assert_trees_all_close(values, jnp.array(expected), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_zero_warmup_is_the_schedule(self):
    base = osd.multistep_decay_schedule(0.5, milestones=[3, 6], decay_factor=2.0)
    schedule = self.variant(osd.with_linear_warmup(base, warmup_steps=0))
    counts = jnp.arange(10)
    chex.assert_trees_all_close(schedule(counts), base(counts))

  def test_matches_optax_warmup_then_constant(self):
    constant = osd.stagewise_schedule([], values=[0.3])
    ours = osd.with_linear_warmup(constant, warmup_steps=10)
    theirs = optax.linear_schedule(0.0, 0.3, 10)
    counts = jnp.arange(30)
    chex.assert_trees_all_close(ours(counts), theirs(counts), rtol=1e-6)

  def test_wraps_a_foreign_optax_schedule(self):
    schedule = osd.with_linear_warmup(optax.constant_schedule(0.5), warmup_steps=2)
    chex.assert_trees_all_close(schedule(jnp.arange(4)), jnp.array([0.0, 0.25, 0.5, 0.5]))

  def test_foreign_schedule_sees_the_callers_integer_count(self):
    # optax's polynomial schedule subtracts transition_begin from the count it is given.
    foreign = optax.polynomial_schedule(1.0, 0.0, 1, 10, transition_begin=5)
    schedule = osd.with_linear_warmup(foreign, warmup_steps=2)
    expected = [float(schedule(jnp.int32(t))) for t in range(20)]
    assert expected[3] == 1.0  # one step after the ramp: before the foreign transition
    assert [float(schedule(t)) for t in range(20)] == expected
    assert [float(schedule(np.int64(t))) for t in range(20)] == expected

  def test_stage_table_keeps_the_wrapped_ramp_shapes(self):
    wsd = osd.wsd_schedule(1.0, warmup_steps=2, stable_steps=3, decay_steps=4, decay_shape='cosine')
    table = osd.with_linear_warmup(wsd, warmup_steps=5).stage_table()
    assert '(cosine)' in table.splitlines()[-2], table
    assert table.count('(linear)') == 2, table  # the warmup's ramp and wsd's own warmup

  def test_stage_index_counts_the_ramp_as_stage_zero(self):
    schedule = osd.with_linear_warmup(
      osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=5), warmup_steps=3
    )
    assert [int(schedule.stage_index(t)) for t in (0, 2, 3, 7, 8)] == [0, 0, 1, 1, 2]

  def test_uint32_counts_after_long_warmup(self):
    schedule = osd.with_linear_warmup(
      osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1000), warmup_steps=10
    )
    counts = jnp.array([2**32 - 1], dtype=jnp.uint32)
    expected_stage = (2**32 - 1 - 10) // 1000 + 1
    assert int(schedule.stage_index(counts)[0]) == expected_stage

"""multistep_decay_schedule, stagewise_schedule and geometric_stage_decay_schedule."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd


class MultistepTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_torch_convention_new_value_at_milestone(self):
    schedule = self.variant(
      osd.multistep_decay_schedule(0.1, milestones=[30, 80], decay_factor=10.0)
    )
    values = schedule(jnp.array([0, 29, 30, 79, 80, 1000]))
    chex.assert_shape(values, (6,))
    chex.assert_trees_all_close(values, jnp.array([0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3]))

  @chex.variants(with_jit=True, without_jit=True)
  def test_epoch_milestones(self):
    schedule = self.variant(
      osd.multistep_decay_schedule(1.0, milestones=[1, 3], decay_factor=2.0, steps_per_epoch=50)
    )
    chex.assert_trees_all_close(
      schedule(jnp.array([49, 50, 149, 150])), jnp.array([1.0, 0.5, 0.5, 0.25])
    )

  def test_matches_optax_piecewise_at_small_counts(self):
    milestones = [3, 10, 11, 40]
    ours = osd.multistep_decay_schedule(2.0, milestones=milestones, decay_factor=4.0)
    theirs = optax.piecewise_constant_schedule(2.0, {m: 0.25 for m in milestones})
    counts = jnp.arange(60)
    chex.assert_trees_all_close(ours(counts), theirs(counts), rtol=1e-6)

  def test_uint32_counts_do_not_wrap(self):
    # optax's piecewise schedule jumps back to init with uint32 counts past a boundary.
    schedule = osd.multistep_decay_schedule(1.0, milestones=[5], decay_factor=10.0)
    counts = jnp.array([4, 5, 6, 2**32 - 1], dtype=jnp.uint32)
    chex.assert_trees_all_close(schedule(counts), jnp.array([1.0, 0.1, 0.1, 0.1]))

  def test_milestones_beyond_int32_compile_and_apply(self):
    schedule = osd.multistep_decay_schedule(1.0, milestones=[10, 3_000_000_000], decay_factor=2.0)
    values = jax.jit(schedule)(jnp.array([9, 10, 2**31 - 1], dtype=jnp.int32))
    chex.assert_trees_all_close(values, jnp.array([1.0, 0.5, 0.5]))
    late = jax.jit(schedule)(jnp.array([2_999_999_999, 3_000_000_000], dtype=jnp.uint32))
    chex.assert_trees_all_close(late, jnp.array([0.5, 0.25]))

  def test_ten_thousand_milestones(self):
    milestones = list(range(7, 70_000, 7))
    schedule = osd.multistep_decay_schedule(1.0, milestones=milestones, decay_factor=1.0001)
    counts = jnp.array([0, 6, 7, 34_999, 69_999], dtype=jnp.int32)
    stages = jax.jit(schedule.stage_index)(counts)
    chex.assert_trees_all_equal(stages, np.asarray([0, 0, 1, 4999, 9999]))

  @given(
    milestones=st.lists(st.integers(0, 10**6), max_size=40, unique=True).map(sorted),
    t=st.integers(0, 2**31 - 1),
  )
  def test_property_counts_milestones_passed(self, milestones, t):
    schedule = osd.multistep_decay_schedule(1.0, milestones=milestones, decay_factor=2.0)
    expected = sum(m <= t for m in milestones)
    assert int(schedule.stage_index(jnp.int32(t))) == expected


def test_milestone_beyond_every_uint32_count_is_refused():
  with pytest.raises(ValueError, match=r'milestones\[2\]=1099511627776 .* 4294967295'):
    osd.multistep_decay_schedule(1.0, milestones=[10, 3_000_000_000, 2**40], decay_factor=2.0)


def test_milestone_beyond_uint32_applies_to_int64_counts_under_x64(x64):
  schedule = osd.multistep_decay_schedule(
    1.0, milestones=[10, 3_000_000_000, 2**40], decay_factor=2.0
  )
  late = schedule(jnp.array([2**40 - 1, 2**40], dtype=jnp.int64))
  chex.assert_trees_all_close(late, jnp.array([0.25, 0.125]))


class StagewiseTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_absolute_values_per_stage(self):
    schedule = self.variant(osd.stagewise_schedule([10, 20], values=[0.5, 0.2, 0.05]))
    chex.assert_trees_all_close(
      schedule(jnp.array([0, 9, 10, 19, 20, 10**9])),
      jnp.array([0.5, 0.5, 0.2, 0.2, 0.05, 0.05]),
    )

  def test_values_may_increase(self):
    schedule = osd.stagewise_schedule([5], values=[0.1, 1.0])
    assert float(schedule(5)) == 1.0

  def test_values_may_be_traced(self):
    def value(values):
      return osd.stagewise_schedule([5], values=values)(7)

    chex.assert_trees_all_close(jax.jit(value)(jnp.array([3.0, 4.0])), jnp.float32(4.0))


class GeometricTest(chex.TestCase):
  def test_epoch_doubling(self):
    schedule = osd.geometric_stage_decay_schedule(1.0, first_stage_length=10)
    assert schedule.change_points(1000) == [10, 30, 70, 150, 310, 630]
    chex.assert_trees_all_close(
      schedule(jnp.array([9, 10, 29, 30, 70])), jnp.array([1.0, 0.5, 0.5, 0.25, 0.125])
    )

  def test_fractional_growth_uses_exact_integer_lengths(self):
    schedule = osd.geometric_stage_decay_schedule(
      1.0, first_stage_length=4, decay_factor=2.0, stage_growth=1.5, num_stages=5
    )
    # lengths floor(4 * 1.5**k): 4, 6, 9, 13 then the last stage runs forever
    assert schedule.change_points() == [4, 10, 19, 32]
    assert int(schedule.stage_index(10**9)) == 4

  def test_growth_one_is_step_decay(self):
    geometric = osd.geometric_stage_decay_schedule(
      1.0, first_stage_length=7, decay_factor=3.0, stage_growth=1.0
    )
    step = osd.step_decay_schedule(1.0, decay_factor=3.0, stage_length=7)
    counts = jnp.arange(100)
    chex.assert_trees_all_close(geometric(counts), step(counts))

  def test_boundaries_beyond_int32_are_exact(self):
    schedule = osd.geometric_stage_decay_schedule(
      1.0, first_stage_length=1, decay_factor=1.0, stage_growth=2.0
    )
    # starts are 2**k - 1; the 31st boundary is 2**31 - 1, the 32nd 2**32 - 1.
    counts = jnp.array([2**31 - 2, 2**31 - 1, 2**32 - 2, 2**32 - 1], dtype=jnp.uint32)
    chex.assert_trees_all_equal(schedule.stage_index(counts), np.asarray([30, 31, 31, 32]))


def _lowered_op_count(schedule):
  text = jax.jit(schedule).lower(jnp.int32(0)).as_text()
  return sum('=' in line and 'constant' not in line for line in text.splitlines())


def test_milestone_lookup_grows_logarithmically():
  # optax's piecewise schedule lowers to one op per boundary; ours to a binary search.
  def ops(num_milestones):
    milestones = list(range(1, num_milestones + 1))
    return _lowered_op_count(
      osd.multistep_decay_schedule(1.0, milestones=milestones, decay_factor=1.0001)
    )

  small, large = ops(10), ops(10_000)
  assert large - small <= 4 * 10  # about log2(10_000 / 10) = 10 halvings, a few ops each


@pytest.mark.parametrize('count', [0, 1, 2**31 - 1])
def test_empty_milestones_are_constant(count):
  assert float(
    osd.multistep_decay_schedule(0.3, milestones=[], decay_factor=10.0)(count)
  ) == pytest.approx(0.3)


@pytest.mark.parametrize('num_boundaries', [1, 2, 31, 32, 33, 34, 64])
def test_compare_all_and_binary_search_agree_around_the_threshold(num_boundaries):
  from optax_stepdecay import _schedules

  rng = np.random.default_rng(num_boundaries)
  boundaries = np.sort(rng.choice(2**32 - 1, num_boundaries, replace=False)).tolist()
  near = np.asarray([b + d for b in boundaries for d in (-1, 0, 1)], np.int64)
  counts = np.clip(
    np.concatenate([near, [0, 2**32 - 1], rng.integers(0, 2**32, 200)]), 0, 2**32 - 1
  )
  counts = jnp.asarray(counts.astype(np.uint32))
  search = _schedules._sorted_stage_index(boundaries, 'scan_unrolled')(counts)
  compare = _schedules._sorted_stage_index(boundaries, 'compare_all')(counts)
  default = _schedules._sorted_stage_index(boundaries)(counts)
  expected = np.searchsorted(np.asarray(boundaries), np.asarray(counts), side='right')
  chex.assert_trees_all_equal(search, compare, default, jnp.asarray(expected, jnp.uint32))


@pytest.mark.parametrize('decay_factor', [1.0001, 3.0, 10.0])
def test_stage_values_are_the_power_formula_and_the_same_under_jit(decay_factor):
  from optax_stepdecay._schedules import _decayed

  milestones = list(range(5, 500, 5))
  schedule = osd.multistep_decay_schedule(0.3, milestones=milestones, decay_factor=decay_factor)
  counts = jnp.arange(600, dtype=jnp.uint32)
  stage = jnp.searchsorted(jnp.asarray(milestones), counts, side='right').astype(jnp.uint32)
  expected = _decayed(0.3, decay_factor, stage)  # eagerly, count by count
  chex.assert_trees_all_equal(schedule(counts), expected)
  chex.assert_trees_all_equal(jax.jit(schedule)(counts), expected)

"""Values, shapes and exactness of step_decay_schedule (Algorithm 1)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd


def closed_form(t, init, alpha, length, transition_begin=0, num_stages=None, end_value=None):
  """The schedule written with Python integers and floats, as the oracle."""
  k = 0 if t < transition_begin else (t - transition_begin) // length
  if num_stages is not None:
    k = min(k, num_stages - 1)
  value = init * alpha**-k  # underflows to 0 where alpha**k would overflow
  return value if end_value is None else max(value, end_value)


class StepDecayValuesTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
    ('plain', dict()),
    ('transition_begin', dict(transition_begin=5)),
    ('num_stages', dict(num_stages=3)),
    ('end_value', dict(end_value=0.01)),
    ('all', dict(transition_begin=2, num_stages=2, end_value=0.2)),
  )
  def test_values_equal_closed_form(self, options):
    schedule = self.variant(
      osd.step_decay_schedule(1.0, decay_factor=3.0, stage_length=4, **options)
    )
    for t in range(40):
      expected = closed_form(t, 1.0, 3.0, 4, **options)
      chex.assert_trees_all_close(schedule(t), jnp.float32(expected), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_value_is_float_scalar(self):
    value = self.variant(osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=100))(
      jnp.int32(7)
    )
    chex.assert_shape(value, ())
    chex.assert_type(value, jnp.float32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_over_counts_gives_vector(self):
    schedule = osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=100)
    values = self.variant(jax.vmap(schedule))(jnp.arange(300))
    chex.assert_shape(values, (300,))
    chex.assert_trees_all_close(
      values[jnp.array([0, 99, 100, 199, 200])], jnp.array([0.1, 0.1, 0.01, 0.01, 1e-3])
    )

  def test_new_value_applies_exactly_at_boundary(self):
    schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10, transition_begin=3)
    assert float(schedule(12)) == 1.0
    assert float(schedule(13)) == 0.5
    assert float(schedule(22)) == 0.5
    assert float(schedule(23)) == 0.25

  def test_decay_factor_one_is_constant(self):
    schedule = osd.step_decay_schedule(0.3, decay_factor=1.0, stage_length=5)
    chex.assert_trees_all_close(schedule(jnp.arange(100)), jnp.full(100, 0.3))

  def test_matches_optax_staircase_at_small_counts(self):
    ours = osd.step_decay_schedule(0.5, decay_factor=4.0, stage_length=7, transition_begin=3)
    theirs = optax.exponential_decay(0.5, 7, 0.25, transition_begin=3, staircase=True)
    counts = jnp.arange(200)
    chex.assert_trees_all_close(ours(counts), theirs(counts), rtol=1e-6)

  def test_no_retrace_for_new_counts(self):
    schedule = osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=100)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def evaluate(count):
      return schedule(count)

    for count in range(0, 1000, 37):
      evaluate(jnp.int32(count))


# Exactness.


def test_optax_staircase_drops_early_ours_does_not():
  # optax floors a float32 quotient: 10_773_999 / 1000 rounds up to 10774.0.
  count = 10_773_999
  alpha = 1.0001
  optax_value = optax.exponential_decay(1.0, 1000, 1 / alpha, staircase=True)(count)
  ours = osd.step_decay_schedule(1.0, decay_factor=alpha, stage_length=1000)
  assert int(ours.stage_index(jnp.int32(count))) == 10773
  alpha32 = float(np.float32(alpha))
  chex.assert_trees_all_close(float(ours(count)), alpha32**-10773, rtol=1e-5)
  chex.assert_trees_all_close(float(optax_value), alpha32**-10774, rtol=1e-5)


@pytest.mark.parametrize(
  ('dtype', 'count'),
  [
    (jnp.int32, 2**31 - 1),
    (jnp.uint32, 2**32 - 1),
    (jnp.uint32, 3_000_000_001),
    (jnp.int32, 1_234_567_999),
    (jnp.int32, 1_234_568_000),
  ],
)
def test_stage_index_exact_at_large_counts(dtype, count):
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1000, transition_begin=1)
  expected = (count - 1) // 1000
  assert int(jax.jit(schedule.stage_index)(dtype(count))) == expected
  assert int(schedule.stage_index(count)) == expected


def test_uint32_count_from_flax_optimizer_step():
  schedule = osd.step_decay_schedule(1.0, decay_factor=10.0, stage_length=3)
  counts = jnp.arange(12, dtype=jnp.uint32)
  chex.assert_trees_all_close(schedule(counts), schedule(counts.astype(jnp.int32)))


def test_python_and_numpy_integer_counts():
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=5)
  for count in (12, np.int64(12), np.uint32(12), np.int8(12)):
    assert float(schedule(count)) == 0.25


def test_python_count_beyond_uint32_raises_without_x64():
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=5)
  with pytest.raises(OverflowError, match='count=4294967296'):
    schedule(2**32)


def test_stage_length_beyond_every_uint32_count_is_refused():
  # A cut that no count reaches would silently never happen.
  with pytest.raises(ValueError, match=r'stage_length=1099511627776 .* 4294967295'):
    osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=2**40)


def test_int64_counts_under_x64(x64):
  schedule = osd.step_decay_schedule(1.0, decay_factor=1.5, stage_length=1_000_000_007)
  count = jnp.asarray(5 * 10**18, dtype=jnp.int64)
  assert osd.count_dtype() == np.int64
  assert int(schedule.stage_index(count)) == 5 * 10**18 // 1_000_000_007
  assert int(jax.jit(schedule.stage_index)(count)) == 5 * 10**18 // 1_000_000_007
  assert int(schedule.stage_index(2**63 - 1)) == (2**63 - 1) // 1_000_000_007
  chex.assert_type(schedule(count), jnp.float64)


def test_stage_length_beyond_uint32_cuts_int64_counts_under_x64(x64):
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=2**40)
  assert float(schedule(jnp.int64(2**40 - 1))) == 1.0
  assert float(schedule(jnp.int64(2**40))) == 0.5


class CountConventionsTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_negative_counts_evaluate_as_zero(self):
    schedule = self.variant(
      osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=3, transition_begin=2)
    )
    chex.assert_trees_all_close(schedule(jnp.array([-5, -1, 0])), jnp.ones(3))

  @chex.variants(with_jit=True, without_jit=True)
  def test_float_counts_are_floored(self):
    schedule = self.variant(osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=3))
    values = schedule(jnp.array([2.0, 2.999, 3.0, -0.5, 1e12]))
    chex.assert_trees_all_close(values[:4], jnp.array([1.0, 1.0, 0.5, 1.0]))
    assert float(values[4]) == 0.0  # beyond every count: underflowed

  @chex.variants(with_jit=True, without_jit=True)
  def test_nan_count_gives_nan(self):
    schedule = self.variant(osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=3))
    assert np.isnan(float(schedule(jnp.float32(jnp.nan))))


class HyperparameterArraysTest(chex.TestCase):
  @chex.variants(with_jit=True, without_jit=True)
  def test_vmap_over_hyperparameters_evaluates_a_sweep(self):
    inits = jnp.array([1.0, 0.5, 0.1, 2.0])
    alphas = jnp.array([2.0, 3.0, 10.0, 1.5])
    lengths = jnp.array([10, 7, 3, 100])

    def value(init, alpha, length):
      return osd.step_decay_schedule(init, decay_factor=alpha, stage_length=length)(jnp.int32(25))

    values = self.variant(jax.vmap(value))(inits, alphas, lengths)
    expected = [
      closed_form(25, *map(float, args)) for args in zip(inits, alphas, lengths, strict=True)
    ]
    chex.assert_shape(values, (4,))
    chex.assert_trees_all_close(values, jnp.array(expected, jnp.float32), rtol=1e-6)

  def test_differentiable_in_float_hyperparameters(self):
    def value(init, alpha):
      return osd.step_decay_schedule(init, decay_factor=alpha, stage_length=10)(
        25
      )  # stage 2: init / alpha**2

    d_init, d_alpha = jax.grad(value, argnums=(0, 1))(3.0, 2.0)
    chex.assert_trees_all_close((d_init, d_alpha), (0.25, -2 * 3.0 / 2.0**3))


@given(
  init=st.floats(1e-4, 10.0),
  alpha=st.floats(1.0, 20.0),
  length=st.integers(1, 10_000),
  begin=st.integers(0, 10_000),
  t=st.integers(0, 2**31 - 1),
)
def test_property_equals_closed_form(init, alpha, length, begin, t):
  schedule = osd.step_decay_schedule(
    init, decay_factor=alpha, stage_length=length, transition_begin=begin
  )
  init32, alpha32 = float(np.float32(init)), float(np.float32(alpha))
  expected = closed_form(t, init32, alpha32, length, begin)
  chex.assert_trees_all_close(float(schedule(jnp.int32(t))), expected, rtol=2e-5, atol=1e-37)


@given(
  alpha=st.floats(1.0, 20.0),
  length=st.integers(1, 1000),
  num_stages=st.none() | st.integers(1, 20),
  start=st.integers(0, 100_000),
)
def test_property_non_increasing_and_constant_within_a_stage(alpha, length, num_stages, start):
  schedule = osd.step_decay_schedule(
    1.0, decay_factor=alpha, stage_length=length, num_stages=num_stages
  )
  counts = jnp.asarray(start + np.arange(256) * 3 * length // 256, dtype=jnp.int32)
  values = np.asarray(schedule(counts))
  assert np.all(np.diff(values) <= 0)
  stages = np.asarray(schedule.stage_index(counts))
  for stage in np.unique(stages):
    assert np.unique(values[stages == stage]).size == 1

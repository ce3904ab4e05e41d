"""wsd_schedule: warmup, stable and decay phases, against transformers' get_wsd_schedule."""

import itertools
import math
from decimal import Decimal
from fractions import Fraction

import chex
import hypothesis
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd
from tests.conftest import oracle

matplotlib.use('Agg')

SHAPES = ('linear', 'cosine', '1-sqrt')
# (warmup W, stable S, decay D, min_lr_ratio r): empty phases and D = 1 included.
CONFIGS = [(10, 20, 30, 0.0), (0, 15, 25, 0.1), (7, 0, 13, 0.25), (5, 10, 1, 0.0), (3, 4, 0, 0.5)]


def reference(t, warmup, stable, decay, warmup_type, decay_type, ratio):
  """REFERENCE.md section 4, transformers' get_wsd_schedule multiplier, in NumPy float64."""
  t = np.asarray(t, np.float64)
  p = t / max(1, warmup)
  warm = {
    'linear': p,
    'cosine': (1 - np.cos(np.pi * p)) / 2,
    '1-sqrt': 1 - np.sqrt(np.clip(1 - p, 0, None)),
  }[warmup_type]
  q = np.clip((t - warmup - stable) / max(1, decay), 0, None)
  cool = {'linear': 1 - q, 'cosine': (1 + np.cos(np.pi * q)) / 2, '1-sqrt': 1 - np.sqrt(q)}[
    decay_type
  ]
  phases = [t < warmup, t < warmup + stable, t < warmup + stable + decay]
  return np.select(phases, [ratio + (1 - ratio) * warm, 1.0, ratio + (1 - ratio) * cool], ratio)


def ours(peak, warmup, stable, decay, warmup_type, decay_type, ratio):
  """The wsd_schedule that transformers' arguments map to (its warmup starts at r * peak)."""
  return osd.wsd_schedule(
    peak,
    warmup_steps=warmup,
    stable_steps=stable,
    decay_steps=decay,
    warmup_shape=warmup_type,
    decay_shape=decay_type,
    init_value=ratio * peak,
    end_ratio=ratio,
  )


@pytest.mark.parametrize(('warmup_type', 'decay_type'), list(itertools.product(SHAPES, SHAPES)))
@pytest.mark.parametrize('config', CONFIGS)
def test_equals_numpy_restatement_of_transformers_formulas(x64, config, warmup_type, decay_type):
  counts = np.arange(sum(config[:3]) + 5)
  expected = 0.3 * reference(counts, *config[:3], warmup_type, decay_type, config[3])
  values = ours(0.3, *config[:3], warmup_type, decay_type, config[3])(counts)
  assert values.dtype == jnp.float64
  chex.assert_trees_all_close(values, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize('decay_type', SHAPES)
def test_float32_values_are_the_formulas_rounded(decay_type):
  config = (10, 20, 30, 0.1)
  counts = np.arange(70)
  expected = 0.3 * reference(counts, *config[:3], 'cosine', decay_type, config[3])
  values = jax.jit(ours(0.3, *config[:3], 'cosine', decay_type, config[3]))(counts)
  assert values.dtype == jnp.float32
  chex.assert_trees_all_close(values, expected, rtol=2e-6, atol=1e-7)


def transformers_rates(peak, num_steps, **kwargs):
  """The lr of transformers' get_wsd_schedule at steps 0, 1, ..., stepping it as in training."""
  torch = oracle('torch')
  transformers = oracle('transformers')
  optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
  scheduler = transformers.get_wsd_schedule(optimizer, **kwargs)
  rates = []
  for _ in range(num_steps):
    rates.append(optimizer.param_groups[0]['lr'])
    optimizer.step()
    scheduler.step()
  return np.array(rates)


@pytest.mark.parametrize(('warmup_type', 'decay_type'), list(itertools.product(SHAPES, SHAPES)))
@pytest.mark.parametrize('config', CONFIGS)
def test_equals_transformers_get_wsd_schedule(x64, config, warmup_type, decay_type):
  warmup, stable, decay, ratio = config
  kwargs = dict(num_warmup_steps=warmup, num_decay_steps=decay, min_lr_ratio=ratio)
  kwargs |= dict(warmup_type=warmup_type, decay_type=decay_type)
  num_steps = warmup + stable + decay + 5
  theirs = transformers_rates(0.3, num_steps, num_stable_steps=stable, **kwargs)
  by_total = transformers_rates(0.3, num_steps, num_training_steps=num_steps - 5, **kwargs)
  schedule = ours(0.3, warmup, stable, decay, warmup_type, decay_type, ratio)
  chex.assert_trees_all_close(schedule(np.arange(num_steps)), theirs, rtol=1e-13, atol=1e-15)
  chex.assert_trees_all_equal(theirs, by_total)


def test_default_warmup_starts_at_init_value_not_at_the_end_value():
  schedule = osd.wsd_schedule(1.0, warmup_steps=4, stable_steps=2, decay_steps=2, end_ratio=0.5)
  chex.assert_trees_all_close(schedule(jnp.arange(4)), jnp.array([0.0, 0.25, 0.5, 0.75]))
  transformers_like = osd.wsd_schedule(
    1.0, warmup_steps=4, stable_steps=2, decay_steps=2, end_ratio=0.5, init_value=0.5
  )
  chex.assert_trees_all_close(transformers_like(0), jnp.float32(0.5))


@pytest.mark.parametrize('jit', [False, True])
@pytest.mark.parametrize('shape', SHAPES)
def test_each_phase_begins_at_its_boundary_count(shape, jit):
  schedule = osd.wsd_schedule(
    2.0, warmup_steps=4, stable_steps=6, decay_steps=5, decay_shape=shape, end_value=0.5
  )
  values = np.asarray((jax.jit(schedule) if jit else schedule)(jnp.arange(20)))
  assert values[3] < 2.0 and values[4] == 2.0  # the stable value applies at t = W
  assert values[10] == 2.0 > values[11]  # the decay's first step has p = 0
  assert values[14] > 0.5
  chex.assert_trees_all_equal(values[15:], np.float32(0.5))  # e from t = W + S + D
  assert np.all(np.diff(values[10:]) <= 0)
  phases = schedule.stage_index(jnp.array([0, 3, 4, 9, 10, 14, 15]))
  chex.assert_trees_all_equal(phases, np.asarray([0, 0, 1, 1, 2, 2, 3]))


@pytest.mark.parametrize('alpha', [2.0, 3.0, 10.0, 7.3])
def test_step_shape_equals_multistep_with_one_milestone(alpha):
  wsd = osd.wsd_schedule(
    0.3, stable_steps=40, decay_steps=60, decay_shape='step', decay_factor=alpha
  )
  by_budget = osd.wsd_schedule(
    0.3, total_steps=100, decay_fraction=0.6, decay_shape='step', decay_factor=alpha
  )
  multistep = osd.multistep_decay_schedule(0.3, milestones=[40], decay_factor=alpha)
  counts = np.array([0, 39, 40, 41, 99, 100, 10**6, 2**31 - 1], np.int32)
  for schedule in (wsd, by_budget):
    chex.assert_trees_all_equal(schedule(counts), multistep(counts))
    chex.assert_trees_all_equal(jax.jit(schedule)(counts), jax.jit(multistep)(counts))
  top = jnp.array([2**32 - 1], jnp.uint32)
  chex.assert_trees_all_equal(wsd(top), multistep(top))
  # W = 8: a power of two, so both ramps' fractions t / W are exact.
  warmed = osd.wsd_schedule(
    0.3, warmup_steps=8, stable_steps=32, decay_steps=1, decay_shape='step', decay_factor=alpha
  )
  chex.assert_trees_all_equal(
    warmed(counts),
    osd.with_linear_warmup(
      osd.multistep_decay_schedule(0.3, milestones=[32], decay_factor=alpha), warmup_steps=8
    )(counts),
  )


def test_phases_exact_at_uint32_counts_beyond_float32_precision():
  schedule = osd.wsd_schedule(
    1.0, warmup_steps=10, stable_steps=4_000_000_000, decay_steps=200_000_000, end_ratio=0.1
  )
  counts = [4_000_000_009, 4_000_000_010, 4_100_000_010, 4_200_000_009, 4_200_000_010]
  counts = jnp.array(counts, jnp.uint32)
  chex.assert_trees_all_equal(jax.jit(schedule.stage_index)(counts), np.asarray([1, 2, 2, 2, 3]))
  values = np.asarray(jax.jit(schedule)(counts))
  assert values[0] == values[1] == 1.0 and 0.1 < values[2] < 1.0 and values[4] == np.float32(0.1)
  chex.assert_trees_all_close(schedule(jnp.int32(2**31 - 1)), jnp.float32(1.0))


def test_int64_boundaries_beyond_uint32_under_x64(x64):
  schedule = osd.wsd_schedule(1.0, stable_steps=2**40, decay_steps=2**33, decay_shape='linear')
  counts = jnp.array([2**40 - 1, 2**40, 2**40 + 2**32, 2**40 + 2**33], jnp.int64)
  chex.assert_trees_all_equal(schedule.stage_index(counts), np.asarray([1, 2, 2, 3]))
  chex.assert_trees_all_close(schedule(counts), np.asarray([1.0, 1.0, 0.5, 0.0]), rtol=1e-7)


def test_boundary_beyond_uint32_counts_is_refused():
  with pytest.raises(
    ValueError, match=r'decay_steps=1 puts the end of the decay at count 4294967296'
  ):
    osd.wsd_schedule(1.0, stable_steps=2**32 - 1, decay_steps=1)
  with pytest.raises(ValueError, match='total_steps=4294967296 is beyond the largest count'):
    osd.wsd_schedule(1.0, total_steps=2**32, decay_steps=10)


def test_vmapped_hyperparameters_equal_per_value_schedules():
  grid = {
    'peak': [0.1, 0.5, 0.3],
    'ratio': [0.0, 0.2, 0.5],
    'decay': [10, 25, 1],
    'warmup': [0, 5, 3],
    'init': [0.0, 0.0, 0.1],
  }

  def values(peak, ratio, decay, warmup, init):
    schedule = osd.wsd_schedule(
      peak,
      warmup_steps=warmup,
      stable_steps=20,
      decay_steps=decay,
      end_ratio=ratio,
      init_value=init,
    )
    return schedule(jnp.arange(60))

  swept = jax.jit(jax.vmap(values))(*(jnp.asarray(v) for v in grid.values()))
  for i in range(3):
    one = values(*(v[i] for v in grid.values()))
    chex.assert_trees_all_close(swept[i], one, rtol=1e-6, atol=1e-7)


def test_array_peak_gives_one_value_per_entry():
  schedule = osd.wsd_schedule(
    np.array([0.1, 0.2]), stable_steps=2, decay_steps=2, decay_shape='linear', end_ratio=0.5
  )
  chex.assert_trees_all_close(schedule(3), jnp.array([0.075, 0.15]))
  with pytest.raises(ValueError, match=r'peak_value=.* stage tables need concrete scalar'):
    schedule.stages()


def test_stable_phase_without_horizon_never_ends():
  schedule = osd.wsd_schedule(0.1, warmup_steps=10)
  assert schedule.num_stages == 2
  peak = float(np.float32(0.1))
  assert schedule.stages() == [osd.Stage(0, 10, 0.0, peak), osd.Stage(10, None, peak)]
  counts = jnp.array([10, 2**31 - 1], jnp.int32)
  chex.assert_trees_all_close(schedule(counts), jnp.full(2, 0.1))


def test_stage_table_shows_ramps_with_their_shapes():
  schedule = osd.wsd_schedule(
    0.5, warmup_steps=3, stable_steps=4, decay_steps=5, warmup_shape='cosine', end_ratio=0.1
  )
  assert schedule.stage_table().splitlines()[1:] == [
    '    0             0             3  0 -> 0.5 (cosine)',
    '    1             3             7  0.5',
    '    2             7            12  0.5 -> 0.05 (1-sqrt)',
    '    3            12             -  0.05',
  ]
  for row in schedule.stages(10):
    assert row.value == float(schedule(row.start))
    if row.ramp_to is not None:
      assert row.ramp_to == float(schedule(row.end))
  assert schedule.change_points() == [3, 7, 12]
  step = osd.wsd_schedule(1.0, total_steps=100, decay_fraction=0.25, decay_shape='step')
  assert step.stages() == [osd.Stage(0, 75, 1.0), osd.Stage(75, None, 0.0)]


def test_json_round_trip_and_plot_of_the_curve():
  schedule = osd.wsd_schedule(
    1.0, total_steps=1000, warmup_fraction=0.05, decay_fraction=0.2, end_value=0.01
  )
  rebuilt = osd.schedule_from_json(schedule.to_json())
  assert rebuilt.to_dict() == schedule.to_dict()
  counts = jnp.arange(0, 1100, 7)
  chex.assert_trees_all_equal(rebuilt(counts), schedule(counts))
  (line,) = schedule.plot(1000).get_lines()
  steps, drawn = line.get_xdata(), line.get_ydata()
  decay = (steps > 800) & (steps < 1000)
  assert decay.sum() > 30  # the 1-sqrt curve is drawn through points, not as a straight line
  chex.assert_trees_all_close(
    drawn[decay], np.asarray(schedule(steps[decay].astype(int))), rtol=1e-7
  )


def test_budget_fractions_are_floors_of_the_exact_decimal():
  schedule = osd.wsd_schedule(1.0, total_steps=1001, warmup_fraction=0.05, decay_fraction=0.2)
  assert schedule.change_points() == [50, 801, 1001]  # W = 50, D = 200, S = 751
  assert int(0.29 * 100) == 28
  for fraction in (0.29, np.float32(0.29), Fraction(29, 100), Decimal('0.29')):
    budget = osd.wsd_schedule(1.0, total_steps=100, decay_fraction=fraction)
    assert budget.change_points() == [71, 100], fraction
  thirds = osd.wsd_schedule(1.0, total_steps=1000, decay_fraction=Fraction(1, 3))
  assert thirds.change_points() == [667, 1000]


def test_schedules_of_this_package_accept_it():
  schedule = osd.wsd_schedule(0.1, warmup_steps=2, total_steps=10, decay_fraction=0.5)
  tx = osd.scale_by_tracked_learning_rate(schedule)
  state = tx.init(jnp.zeros(1))
  for _ in range(3):
    _, state = tx.update(jnp.ones(1), state)
  chex.assert_trees_all_close(osd.current_learning_rate(state), schedule(2))


ONE = {'stable_steps': 1, 'decay_steps': 1}
TEN = {'total_steps': 10}
BAD = [
  (ONE | {'peak_value': 0.0}, 'peak_value must be > 0'),
  (ONE | {'peak_value': math.nan}, 'peak_value must be finite'),
  ({'init_value': -0.1}, 'init_value must be >= 0'),
  ({'warmup_steps': -1}, 'warmup_steps must be >= 0, got -1'),
  ({'warmup_steps': 2.5}, 'warmup_steps must be an integer, got 2.5'),
  (ONE | {'stable_steps': -1}, 'stable_steps must be >= 0, got -1'),
  (ONE | {'decay_steps': -2}, 'decay_steps must be >= 0, got -2'),
  ({'stable_steps': 1}, 'stable_steps=1 needs decay_steps or decay_fraction'),
  ({'decay_steps': 5}, 'decay_steps=5 needs stable_steps or total_steps'),
  ({'total_steps': 0, 'decay_steps': 0}, 'total_steps must be >= 1, got 0'),
  ({'total_steps': 10.0, 'decay_steps': 1}, 'total_steps must be an integer, got 10.0'),
  (ONE | TEN, 'at most one of stable_steps and total_steps'),
  (TEN | {'warmup_steps': 6, 'decay_steps': 5}, 'total_steps=10 is shorter than'),
  (TEN | {'warmup_fraction': 0.7, 'decay_steps': 4}, 'total_steps=10 is shorter than'),
  (
    TEN | {'warmup_steps': 1, 'warmup_fraction': 0.1, 'decay_steps': 1},
    'at most one of warmup_steps and warmup_fraction',
  ),
  ({'decay_fraction': 0.2, 'stable_steps': 10}, 'decay_fraction=0.2 is a fraction of total_steps'),
  (TEN | {'decay_fraction': 1.5}, 'decay_fraction must be a fraction in [0, 1]'),
  (TEN | {'decay_fraction': -0.1}, 'decay_fraction must be a fraction in [0, 1]'),
  (TEN | {'decay_fraction': math.nan}, 'decay_fraction must be finite'),
  (TEN | {'decay_fraction': True}, 'decay_fraction must be a real number'),
  (TEN | {'decay_fraction': '0.2'}, 'decay_fraction must be a real number'),
  ({'warmup_shape': 'step'}, "warmup_shape must be one of 'linear', 'cosine', '1-sqrt'; got"),
  (ONE | {'decay_shape': 'exponential'}, 'decay_shape must be one of'),
  (ONE | {'end_value': 2.0}, 'end_value=2.0 must be <= peak_value=1.0'),
  (ONE | {'end_value': -1.0}, 'end_value must be >= 0'),
  (ONE | {'end_ratio': 1.5}, 'end_ratio must be <= 1, got 1.5'),
  (ONE | {'end_ratio': -0.5}, 'end_ratio must be >= 0'),
  (ONE | {'decay_factor': 0.5}, 'decay_factor must be >= 1'),
  (ONE | {'end_value': 0.1, 'end_ratio': 0.1}, 'at most one of end_value, end_ratio and decay'),
]


@pytest.mark.parametrize(('kwargs', 'message'), BAD)
def test_every_bad_argument_raises_value_error_naming_it(kwargs, message):
  kwargs = {'peak_value': 1.0} | kwargs
  with pytest.raises(ValueError) as error:
    osd.wsd_schedule(**kwargs)
  assert message in str(error.value)


def test_traced_lengths_are_not_checked():
  # Documented: a traced negative length passes through unchecked.
  def value(decay):
    return osd.wsd_schedule(1.0, stable_steps=0, decay_steps=decay)(0)

  with pytest.raises(ValueError, match='decay_steps must be >= 0'):
    value(-1)
  assert np.isfinite(float(jax.jit(value)(jnp.int32(3))))


ARGUMENT = st.one_of(
  st.integers(-2, 300), st.floats(-1.0, 2.0), st.floats(allow_nan=True), st.sampled_from([None])
)


FUZZED = (
  'warmup_steps',
  'stable_steps',
  'decay_steps',
  'total_steps',
  'warmup_fraction',
  'decay_fraction',
  'init_value',
  'end_value',
  'end_ratio',
  'decay_factor',
)
SHAPE = st.sampled_from(['linear', 'cosine', '1-sqrt', 'step'])


@hypothesis.settings(max_examples=80)
@given(
  st.fixed_dictionaries({}, optional={name: ARGUMENT for name in FUZZED} | {'decay_shape': SHAPE})
)
def test_fuzzed_arguments_are_refused_by_name_or_give_usable_values(kwargs):
  try:
    schedule = osd.wsd_schedule(0.5, **kwargs)
  except ValueError as error:
    assert any(name in str(error) for name in kwargs), str(error)
    return
  values = np.asarray(schedule(np.array([0, 1, 2, 5, 10, 100, 301, 700, 2**31 - 1], np.int32)))
  top = max(0.5, float(kwargs.get('init_value') or 0))
  assert np.all(np.isfinite(values)) and np.all(values >= 0) and np.all(values <= top * (1 + 1e-6))

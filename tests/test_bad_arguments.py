"""Every impossible argument raises ValueError at construction, naming it and its value."""

import functools
import inspect
import math

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import optax_stepdecay as osd

step = osd.step_decay_schedule
horizon = osd.fixed_horizon_step_decay_schedule
multistep = osd.multistep_decay_schedule
stagewise = osd.stagewise_schedule
geometric = osd.geometric_stage_decay_schedule
base = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10)
auto = osd.auto_step_decay
plateau = osd.reduce_on_plateau
sgd = osd.step_decay_sgd
tracked = osd.scale_by_tracked_learning_rate
INT32_LIMIT = '2**31 - 1 = 2147483647'
UINT32_LIMIT = 'beyond the largest count schedules evaluate, 4294967295 (uint32)'

CASES = [
  # (factory, args, kwargs, text the message must contain)
  (step, (1.0, 0.1, 10), {}, 'decay_factor must be >= 1, got 0.1'),
  (step, (1.0, 0.0, 10), {}, 'decay_factor must be >= 1, got 0.0'),
  (step, (1.0, -2.0, 10), {}, 'decay_factor must be >= 1, got -2.0'),
  (step, (1.0, math.nan, 10), {}, 'decay_factor must be finite, got nan'),
  (step, (1.0, math.inf, 10), {}, 'decay_factor must be finite, got inf'),
  (step, (1.0, 2.0, 0), {}, 'stage_length must be >= 1, got 0'),
  (step, (1.0, 2.0, -5), {}, 'stage_length must be >= 1, got -5'),
  (step, (1.0, 2.0, 2.5), {}, 'stage_length must be an integer, got 2.5'),
  (step, (1.0, 2.0, 10.0), {}, 'stage_length must be an integer, got 10.0'),
  (step, (1.0, 2.0, True), {}, 'stage_length must be an integer, got True'),
  (step, (1.0, 2.0, 10), {'transition_begin': -1}, 'transition_begin must be >= 0, got -1'),
  (step, (1.0, 2.0, 10), {'num_stages': 0}, 'num_stages must be >= 1, got 0'),
  (step, (math.nan, 2.0, 10), {}, 'init_value must be finite, got nan'),
  (step, (math.inf, 2.0, 10), {}, 'init_value must be finite, got inf'),
  (step, ('0.1', 2.0, 10), {}, "init_value must be a real number, got '0.1'"),
  (step, (0.1, 2.0, 10), {'end_value': 0.5}, 'end_value=0.5 must be <= init_value=0.1'),
  (step, (jnp.array([1.0, jnp.nan]), 2.0, 10), {}, 'init_value must be finite'),
  (horizon, (1.0, 0, 10.0), {}, 'total_steps must be >= 1, got 0'),
  (horizon, (1.0, 100.0, 10.0), {}, 'total_steps must be an integer, got 100.0'),
  (horizon, (1.0, 100, 0.5), {}, 'decay_factor must be >= 1, got 0.5'),
  (horizon, (1.0, 100, 2.0), {'num_stages': 0}, 'num_stages must be >= 1, got 0'),
  (horizon, (1.0, 100, 2.0), {'num_stages': 101}, 'num_stages=101 must be <= total_steps=100'),
  (multistep, (1.0, [30, 10]), {}, 'milestones must be strictly increasing, got [30, 10]'),
  (multistep, (1.0, [10, 10]), {}, 'repeated at index 1'),
  (multistep, (1.0, [-1, 10]), {}, 'milestones[0] must be >= 0, got -1'),
  (multistep, (1.0, [10.5]), {}, 'milestones[0] must be an integer, got 10.5'),
  (multistep, (1.0, [10.0]), {}, 'milestones[0] must be an integer, got 10.0'),
  (multistep, (1.0, 10), {}, 'milestones must be a sequence, got 10'),
  (multistep, (1.0, [10]), {'decay_factor': 0.1}, 'pass decay_factor=10'),
  (multistep, (1.0, [10]), {'steps_per_epoch': 0}, 'steps_per_epoch must be >= 1, got 0'),
  (stagewise, ([10, 5], [1.0, 2.0, 3.0]), {}, 'boundaries must be strictly increasing'),
  (stagewise, ([10], [1.0]), {}, 'values must have len(boundaries) + 1 = 2 entries, got 1'),
  (stagewise, ([10], [1.0, math.nan]), {}, 'values must be finite'),
  (geometric, (1.0, 0), {}, 'first_stage_length must be >= 1, got 0'),
  (geometric, (1.0, 10), {'stage_growth': 0.5}, 'stage_growth must be >= 1, got 0.5'),
  (geometric, (1.0, 10), {'decay_factor': 0.5}, 'decay_factor must be >= 1, got 0.5'),
  (geometric, (1.0, 10), {'stage_growth': 1.00001}, 'pass num_stages'),
  (osd.with_linear_warmup, (base, -1), {}, 'warmup_steps must be >= 0, got -1'),
  (osd.with_linear_warmup, (base, 1.5), {}, 'warmup_steps must be an integer, got 1.5'),
  (osd.with_linear_warmup, (0.1, 10), {}, 'schedule must be a callable of the count, got 0.1'),
  (osd.with_linear_warmup, (base, 10), {'init_value': math.nan}, 'init_value must be finite'),
  (osd.horizon_num_stages, (0, 2.0), {}, 'total_steps must be >= 1, got 0'),
  (osd.step_decay_sgd, (0.1, 10.0), {}, 'Pass exactly one of stage_length and total_steps'),
  (
    osd.step_decay_sgd,
    (0.1, 10.0),
    {'stage_length': 10, 'total_steps': 100},
    'Pass exactly one of stage_length and total_steps',
  ),
  (
    osd.step_decay_sgd,
    (0.1, 10.0),
    {'stage_length': 10, 'momentum': -0.9},
    'momentum must be >= 0',
  ),
  (
    osd.step_decay_sgd,
    (0.1, 10.0),
    {'stage_length': 10, 'weight_decay': -1.0},
    'weight_decay must be >= 0, got -1.0',
  ),
  (osd.step_decay_sgd, (0.1, 10.0), {'stage_length': 10, 'nesterov': True}, 'nesterov=True needs'),
  (osd.step_decay_sgd, (0.1, 0.1), {'stage_length': 10}, 'decay_factor must be >= 1, got 0.1'),
  # Step sizes that are not positive, or not representable in float32.
  (step, (-0.1, 2.0, 10), {}, 'init_value must be > 0, got -0.1'),
  (step, (0.0, 2.0, 10), {}, 'init_value must be > 0, got 0.0'),
  (step, (1e-50, 2.0, 10), {}, 'init_value must be >= 1.175e-38, the smallest normal float32'),
  (step, (1e-40, 2.0, 10), {}, 'subnormals that accelerators flush to 0'),
  (step, (1e39, 2.0, 10), {}, 'init_value must be finite, got 1e+39: it overflows float32'),
  (step, (10**40, 2.0, 10), {}, 'init_value must be finite, got 1000000000000000000000000000'),
  (step, (1.0, 2.0, 10), {'end_value': -0.1}, 'end_value must be >= 0, got -0.1'),
  (horizon, (-0.5, 100, 10.0), {}, 'init_value must be > 0, got -0.5'),
  (horizon, (0, 100, 10.0), {}, 'init_value must be > 0, got 0'),
  (multistep, (-0.1, [10]), {}, 'init_value must be > 0, got -0.1'),
  (stagewise, ([10], [0.1, 0.0]), {}, 'values must be > 0, got [0.1, 0.0]'),
  (stagewise, ([10], [-0.1, 0.1]), {}, 'values must be > 0, got [-0.1, 0.1]'),
  (geometric, (0.0, 10), {}, 'init_value must be > 0, got 0.0'),
  (osd.with_linear_warmup, (base, 10), {'init_value': -0.1}, 'init_value must be >= 0, got -0.1'),
  (sgd, (-0.1, 10.0), {'stage_length': 10}, 'init_value must be > 0, got -0.1'),
  (sgd, (0.0, 10.0), {'total_steps': 100}, 'init_value must be > 0, got 0.0'),
  (sgd, (0.1, 10.0), {'stage_length': 10, 'momentum': 1.0}, 'momentum must be < 1, got 1.0'),
  (sgd, (0.1, 10.0), {'stage_length': 10, 'momentum': 1.5}, 'momentum must be < 1, got 1.5'),
  (sgd, (jnp.array([0.1, 0.2]), 10.0), {'stage_length': 10}, 'init_value must be a scalar'),
  (tracked, (-0.1,), {}, 'learning_rate must be > 0, got -0.1'),
  (tracked, (0.0,), {}, 'learning_rate must be > 0, got 0.0'),
  (tracked, (math.nan,), {}, 'learning_rate must be finite, got nan'),
  (tracked, (math.inf,), {}, 'learning_rate must be finite, got inf'),
  (tracked, (jnp.array([0.1, 0.2]),), {}, 'learning_rate must be a scalar, got shape (2,)'),
  (auto, (-0.1,), {}, 'init_value must be > 0, got -0.1'),
  (auto, (math.nan,), {}, 'init_value must be finite, got nan'),
  (auto, (jnp.array([0.1, 0.2]),), {}, 'init_value must be a scalar, got shape (2,)'),
  (auto, (0.1,), {'min_value': 1.0}, 'min_value=1.0 must be <= init_value=0.1'),
  (auto, (0.1,), {'min_value': -1.0}, 'min_value must be >= 0, got -1.0'),
  (auto, (0.1,), {'decay_factor': math.inf}, 'decay_factor must be finite, got inf'),
  (auto, (0.1,), {'slope_threshold': math.nan}, 'slope_threshold must be finite, got nan'),
  (auto, (0.1,), {'check_growth': math.inf}, 'check_growth must be finite, got inf'),
  (auto, (0.1,), {'min_growth': 0.5}, 'min_growth must be >= 1, got 0.5'),
  (auto, (0.1,), {'first_check': 2.5}, 'first_check must be an integer, got 2.5'),
  (plateau, (), {'decay_factor': jnp.array([2.0, 3.0])}, 'decay_factor must be a scalar'),
  (plateau, (), {'nonfinite': 'skip'}, "nonfinite must be 'ignore' or 'bad', got 'skip'"),
  (plateau, (), {'threshold': math.nan}, 'threshold must be finite, got nan'),
  (osd.sample_iterate, (0.0,), {}, 'learning_rate must be > 0, got 0.0'),
  (osd.sample_iterate, (0.1,), {'seed': -1}, 'seed must be >= 0, got -1'),
  (osd.sample_iterate, (0.1,), {'seed': 2**40}, 'seed must be <= 4294967295, got 1099511627776'),
  (osd.suffix_average, (-1,), {}, 'start_step must be >= 0, got -1'),
  (osd.stage_average, (0.1,), {}, 'schedule must be a schedule of this package, got 0.1'),
  (osd.schedule_from_dict, ({'name': 'step_decay_schedule'},), {}, 'config must be a dict with'),
  (osd.schedule_from_json, ('{"name": "cosine", "args": {}}',), {}, "unknown schedule 'cosine'"),
  # Counts that optax's int32 counters (or any uint32 count) never reach.
  (horizon, (0.5, 10**12, 10), {}, 'total_steps=1000000000000 puts its last update at count'),
  (step, (1.0, 2.0, 2**40), {}, f'stage_length=1099511627776 is {UINT32_LIMIT}'),
  (
    step,
    (1.0, 2.0, 10),
    {'transition_begin': 2**33},
    f'transition_begin=8589934592 is {UINT32_LIMIT}',
  ),
  (
    step,
    (1.0, 2.0, 2**30),
    {'num_stages': 5},
    'num_stages=5 puts a stage boundary at count 4294967296',
  ),
  (multistep, (1.0, [10, 2**33]), {}, f'milestones[1]=8589934592 is {UINT32_LIMIT}'),
  (multistep, (1.0, [10**9]), {'steps_per_epoch': 10}, 'milestones[0]=1000000000 puts a stage'),
  (stagewise, ([2**33], [1.0, 0.5]), {}, f'boundaries[0]=8589934592 is {UINT32_LIMIT}'),
  (geometric, (1.0, 2**33), {}, f'first_stage_length=8589934592 is {UINT32_LIMIT}'),
  (geometric, (1.0, 1), {'num_stages': 40}, 'num_stages=40 puts a stage boundary at count'),
  (osd.with_linear_warmup, (base, 10**12), {}, f'warmup_steps=1000000000000 is {UINT32_LIMIT}'),
  (osd.with_linear_warmup, (base, 2**32 - 5), {}, 'moves the stage boundaries'),
  (
    sgd,
    (0.5, 10.0),
    {'total_steps': 10**12},
    'total_steps must be <= 2147483648, got 1000000000000',
  ),
  (
    sgd,
    (0.5, 10.0),
    {'stage_length': 2**31},
    'stage_length must be <= 2147483647, got 2147483648',
  ),
  (sgd, (0.5, 10.0), {'stage_length': 2**30, 'num_stages': 4}, 'puts the last cut at count 3221'),
  (tracked, (multistep(0.1, milestones=[3_000_000_000]),), {}, 'beyond count 2147483647'),
  (
    tracked,
    (step(0.1, decay_factor=10.0, stage_length=2**31),),
    {},
    'which this transformation never reaches',
  ),
  (auto, (0.1,), {'first_check': 10**12}, 'first_check must be <= 2147483647, got 10000'),
  (plateau, (), {'patience': 10**12}, 'patience must be <= 2147483646, got 1000000000000'),
  (plateau, (), {'cooldown': 10**12}, 'cooldown must be <= 2147483647, got 1000000000000'),
  (plateau, (), {'accumulation_size': 10**12}, 'accumulation_size must be <= 2147483647'),
  (osd.suffix_average, (10**12,), {}, 'start_step must be <= 2147483647, got 1000000000000'),
  # More cases of these three in tests/test_wsd.py and tests/test_cooldown.py.
  (osd.wsd_schedule, (1.0,), {'decay_steps': 10}, 'decay_steps=10 needs stable_steps or total'),
  (
    osd.wsd_schedule,
    (1.0,),
    {'total_steps': 2**32, 'decay_steps': 1},
    f'=4294967296 is {UINT32_LIMIT}',
  ),
  (osd.scale_by_cooldown, (1.0,), {'end_ratio': 2.0}, 'end_ratio must be <= 1, got 2.0'),
  (
    osd.start_cooldown,
    (osd.scale_by_cooldown(1.0).init(jnp.zeros(1)), 2**31),
    {},
    'decay_steps must be <= 2147483647',
  ),
]


def call(factory, args, kwargs):
  """The cases give arguments in signature order; all but the first are keyword-only."""
  names = list(inspect.signature(factory).parameters)
  return factory(*args[:1], **dict(zip(names[1:], args[1:], strict=False)), **kwargs)


@pytest.mark.parametrize(('factory', 'args', 'kwargs', 'message'), CASES)
def test_bad_argument_raises_value_error_naming_it(factory, args, kwargs, message):
  with pytest.raises(ValueError) as error:
    call(factory, args, kwargs)
  assert message in str(error.value)


def _factory(case):
  factory = case[0]
  return factory.func if isinstance(factory, functools.partial) else factory


NOT_FACTORIES = {'count_dtype', 'current_learning_rate', 'output_params'}


def test_every_public_factory_has_impossible_argument_cases():
  public = {
    name
    for name in osd.__all__
    if name not in NOT_FACTORIES and not inspect.isclass(getattr(osd, name))
  }
  covered = {_factory(case).__name__ for case in CASES}
  assert public <= covered, sorted(public - covered)


@pytest.mark.parametrize(
  'build',
  [
    lambda: osd.step_decay_sgd(0.5, decay_factor=10.0, total_steps=10**12),
    lambda: osd.auto_step_decay(0.1, first_check=10**12),
    lambda: osd.reduce_on_plateau(accumulation_size=10**12),
    lambda: osd.suffix_average(10**12),
  ],
)
def test_int32_refusals_explain_the_counter(build):
  with pytest.raises(ValueError, match=r"optax's int32 step counters stop at 2\*\*31 - 1"):
    build()


def test_limits_are_inclusive():
  # The largest reachable counts are accepted.
  osd.step_decay_sgd(0.5, decay_factor=10.0, total_steps=2**31)
  osd.step_decay_sgd(0.5, decay_factor=10.0, stage_length=2**31 - 1)
  osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=2**32 - 1)
  osd.multistep_decay_schedule(1.0, milestones=[2**32 - 1])
  osd.reduce_on_plateau(patience=2**31 - 2, cooldown=2**31 - 1, accumulation_size=2**31 - 1)
  osd.suffix_average(2**31 - 1)
  osd.auto_step_decay(0.1, first_check=2**31 - 1)
  osd.sample_iterate(0.1, seed=2**32 - 1)


def test_milestone_at_zero_is_legal_and_cuts_from_the_first_update():
  # As torch's MultiStepLR: the new value applies at the milestone itself, here count 0.
  schedule = osd.multistep_decay_schedule(0.1, milestones=[0, 5], decay_factor=10.0)
  chex.assert_trees_all_close(schedule(jnp.array([0, 4, 5])), jnp.array([0.01, 0.01, 0.001]))
  stagewise_at_zero = osd.stagewise_schedule([0], values=[1.0, 0.5])
  assert float(stagewise_at_zero(0)) == 0.5


def test_torch_gamma_gets_a_reciprocal_hint():
  with pytest.raises(ValueError, match=r'pass decay_factor=10'):
    osd.step_decay_schedule(0.1, decay_factor=0.1, stage_length=30)


def test_traced_hyperparameters_pass_through_unchecked():
  def value(alpha, length):
    return osd.step_decay_schedule(1.0, decay_factor=alpha, stage_length=length)(20)

  assert float(jax.jit(value)(2.0, 10)) == 0.25


def test_traced_decay_factor_cannot_set_the_horizon():
  def value(alpha):
    return osd.fixed_horizon_step_decay_schedule(1.0, total_steps=100, decay_factor=alpha)(0)

  with pytest.raises(ValueError, match='decay_factor must be a concrete value'):
    jax.jit(value)(2.0)


def test_traced_total_steps_is_refused_with_a_static_args_hint():
  factory = optax.inject_hyperparams(osd.step_decay_sgd)
  tx = factory(init_value=0.1, decay_factor=10.0, total_steps=100)
  state = tx.init(jnp.zeros(2))
  with pytest.raises(ValueError, match=r'total_steps must be a concrete value.*static_args'):
    jax.jit(tx.update)(jnp.ones(2), state, jnp.zeros(2))


def test_traced_warmup_steps_is_refused_with_a_static_args_hint():
  def value(warmup_steps):
    return osd.with_linear_warmup(base, warmup_steps=warmup_steps)(3)

  with pytest.raises(ValueError, match=r'warmup_steps must be a concrete value.*static_args'):
    jax.jit(value)(5)


def test_traced_impossible_values_are_not_checked():
  # Documented: a traced hyperparameter cannot be inspected at construction.
  def lr(init_value):
    return osd.step_decay_schedule(init_value, decay_factor=2.0, stage_length=10)(0)

  assert float(jax.jit(lr)(-1.0)) == -1.0

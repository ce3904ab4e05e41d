"""Fuzzed numeric arguments: every factory either refuses them clearly or gives usable step sizes.

"Clearly" is a ``ValueError`` that names one of the arguments; "usable" is finite step sizes
that are positive wherever the exact value is a normal float32 (a step size that underflows
after many cuts is 0, as it must be). Each argument is drawn from its valid range four times
in five and from wild numbers (NaN, inf, huge, negative, non-integer) otherwise.
"""

import hypothesis
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd

OMIT = object()
EDGES = [0, 1, -1, 2, 2**31 - 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63, 10**12]
EDGES += [0.0, 0.5, 1.0, 1.5, 1e-40, 1e-50, 3.4e38, 1e39]
NUMBERS = st.one_of(
  st.integers(-3, 300),
  st.floats(-1.0, 20.0),
  st.floats(allow_nan=True, allow_infinity=True),
  st.integers(-(2**70), 2**70),
  st.sampled_from(EDGES),
)
COUNTS = np.array([0, 1, 2, 3, 7, 10, 100, 1000, 10**6, 10**9, 2**31 - 1])
TINY = float(np.finfo(np.float32).tiny)
FEW = hypothesis.settings(max_examples=30)


def fuzz(valid, *, optional=False):
  """Mostly draws from ``valid``; one in five from NUMBERS; optional ones may be left out."""
  if optional:
    valid = st.one_of(st.just(OMIT), valid)
  return st.integers(0, 4).flatmap(lambda r: NUMBERS if r == 0 else valid)


POSITIVE = fuzz(st.floats(1e-6, 1e3))
FACTOR = fuzz(st.floats(1.0, 100.0))
CUTTING_FACTOR = fuzz(st.floats(1.01, 100.0))
LENGTH = fuzz(st.integers(1, 10**6))
BOUNDARIES = st.integers(0, 4).flatmap(
  lambda r: (
    st.lists(NUMBERS, max_size=4)
    if r == 0
    else st.lists(st.integers(0, 10**6), unique=True, max_size=6).map(sorted)
  )
)


def arguments(**strategies):
  """Keyword arguments drawn from the strategies; OMIT leaves one out."""
  return st.fixed_dictionaries(strategies).map(
    lambda kwargs: {k: v for k, v in kwargs.items() if v is not OMIT}
  )


def build(factory, *args, **kwargs):
  """The factory's result, or None after checking that its ValueError names a keyword argument."""
  try:
    result = factory(*args, **kwargs)
  except ValueError as error:
    message = str(error)
    assert any(name in message for name in kwargs), message
    hypothesis.event('refused')
    return None
  hypothesis.event('built')
  return result


def assert_usable(values, exact=None):
  """Finite, non-negative step sizes, positive where the exact value is a normal float32."""
  values = np.asarray(values, np.float64)
  assert np.all(np.isfinite(values)), values
  assert np.all(values >= 0), values
  if exact is not None:
    assert np.all(values[np.asarray(exact) >= 2 * TINY] > 0), (values, exact)


def decayed(schedule, init_value, decay_factor, end_value=0.0):
  """The exact value of a decaying schedule at COUNTS, from its (exact) stage index."""
  stages = np.asarray(schedule.stage_index(COUNTS.astype(np.int32)), np.float64)
  init, alpha = float(np.float32(init_value)), float(np.float32(decay_factor))
  with np.errstate(over='ignore', under='ignore'):
    return np.maximum(init * alpha**-stages, float(end_value))


@given(
  arguments(
    init_value=POSITIVE,
    decay_factor=FACTOR,
    stage_length=LENGTH,
    num_stages=fuzz(st.integers(1, 50), optional=True),
    transition_begin=fuzz(st.integers(0, 10**6), optional=True),
    end_value=fuzz(st.floats(0.0, 1e-6), optional=True),
  )
)
def test_step_decay_schedule(kwargs):
  schedule = build(osd.step_decay_schedule, **kwargs)
  if schedule is not None:
    values = schedule(COUNTS.astype(np.int32))
    exact = decayed(schedule, kwargs['init_value'], kwargs['decay_factor'])
    assert_usable(values, exact)
    assert np.all(np.diff(np.asarray(values)) <= 0)


@given(
  arguments(
    init_value=POSITIVE,
    total_steps=LENGTH,
    decay_factor=CUTTING_FACTOR,
    num_stages=fuzz(st.integers(1, 10), optional=True),
  )
)
def test_fixed_horizon_step_decay_schedule(kwargs):
  schedule = build(osd.fixed_horizon_step_decay_schedule, **kwargs)
  if schedule is not None:
    values = schedule(COUNTS.astype(np.int32))
    assert_usable(values, decayed(schedule, kwargs['init_value'], kwargs['decay_factor']))


@given(
  arguments(
    init_value=POSITIVE,
    decay_factor=FACTOR,
    steps_per_epoch=fuzz(st.integers(1, 1000), optional=True),
  ),
  BOUNDARIES,
)
def test_multistep_decay_schedule(kwargs, milestones):
  schedule = build(osd.multistep_decay_schedule, milestones=milestones, **kwargs)
  if schedule is not None:
    values = schedule(COUNTS.astype(np.int32))
    assert_usable(values, decayed(schedule, kwargs['init_value'], kwargs['decay_factor']))


@given(
  BOUNDARIES.flatmap(
    lambda b: st.tuples(st.just(b), st.lists(POSITIVE, min_size=len(b) + 1, max_size=len(b) + 1))
  )
)
def test_stagewise_schedule(boundaries_and_values):
  boundaries, values = boundaries_and_values
  schedule = build(osd.stagewise_schedule, boundaries=boundaries, values=values)
  if schedule is not None:
    assert_usable(schedule(COUNTS.astype(np.int32)), np.full(len(COUNTS), np.inf))


@FEW
@given(
  arguments(
    init_value=POSITIVE,
    first_stage_length=LENGTH,
    decay_factor=fuzz(st.floats(1.0, 100.0), optional=True),
    stage_growth=fuzz(st.floats(1.0, 10.0), optional=True),
    num_stages=fuzz(st.integers(1, 50), optional=True),
  )
)
def test_geometric_stage_decay_schedule(kwargs):
  schedule = build(osd.geometric_stage_decay_schedule, **kwargs)
  if schedule is not None:
    values = schedule(COUNTS.astype(np.int32))
    assert_usable(values, decayed(schedule, kwargs['init_value'], kwargs.get('decay_factor', 2.0)))


@given(
  arguments(
    warmup_steps=fuzz(st.integers(0, 10**6)),
    init_value=fuzz(st.floats(0.0, 1.0), optional=True),
  )
)
def test_with_linear_warmup(kwargs):
  base = osd.step_decay_schedule(0.5, decay_factor=2.0, stage_length=1000)
  schedule = build(osd.with_linear_warmup, schedule=base, **kwargs)
  if schedule is not None:
    assert_usable(schedule(COUNTS.astype(np.int32)))
    assert float(schedule(np.int32(min(kwargs['warmup_steps'], 2**31 - 1)))) > 0


def first_rates(tx, num_updates=2, **extra):
  """The step sizes of the first updates (zero params, gradient ones), and the updates."""
  params = jnp.zeros(2)
  state = tx.init(params)
  rates, updates = [], []
  for _ in range(num_updates):
    update, state = tx.update(jnp.ones(2), state, params, **extra)
    rates.append(float(osd.current_learning_rate(state)))
    updates.append(np.asarray(update))
  return np.array(rates), updates


@FEW
@given(
  arguments(
    init_value=POSITIVE,
    decay_factor=CUTTING_FACTOR,
    num_stages=fuzz(st.integers(1, 10), optional=True),
    momentum=fuzz(st.floats(0.0, 0.99), optional=True),
    weight_decay=fuzz(st.floats(0.0, 1.0), optional=True),
  ),
  st.sampled_from(['stage_length', 'total_steps']),
  LENGTH,
)
def test_step_decay_sgd(kwargs, horizon, length):
  tx = build(osd.step_decay_sgd, **kwargs, **{horizon: length})
  if tx is not None:
    rates, _ = first_rates(tx)
    init, alpha = (float(np.float32(kwargs[k])) for k in ('init_value', 'decay_factor'))
    assert_usable(rates, np.array([init, init / alpha]))  # at most one cut in two updates


@given(POSITIVE)
def test_scale_by_tracked_learning_rate(learning_rate):
  tx = build(osd.scale_by_tracked_learning_rate, learning_rate=learning_rate)
  if tx is not None:
    rates, updates = first_rates(tx)
    assert_usable(rates, np.full(2, np.inf))
    assert np.all(np.isfinite(updates))


@FEW
@given(
  arguments(
    init_value=POSITIVE,
    decay_factor=fuzz(st.floats(1.0, 100.0), optional=True),
    first_check=fuzz(st.integers(2, 10**4), optional=True),
    check_growth=fuzz(st.floats(1.01, 10.0), optional=True),
    slope_threshold=fuzz(st.floats(-10.0, 10.0), optional=True),
    min_growth=fuzz(st.floats(1.0, 10.0), optional=True),
    fallback_growth=fuzz(st.one_of(st.none(), st.floats(1.01, 100.0)), optional=True),
    min_value=fuzz(st.floats(0.0, 1e-6), optional=True),
  )
)
@example(kwargs={'init_value': 1.0, 'fallback_growth': 2**64})  # once too large for np.isinf
def test_auto_step_decay(kwargs):
  tx = build(osd.auto_step_decay, **kwargs)
  if tx is not None:
    rates, updates = first_rates(tx, num_updates=3)
    assert_usable(rates, np.full(3, np.inf))  # no cut before the second check, at 3 or later
    assert np.all(np.isfinite(updates))


@FEW
@given(
  arguments(
    decay_factor=fuzz(st.floats(1.0, 100.0), optional=True),
    patience=fuzz(st.integers(0, 3), optional=True),
    threshold=fuzz(st.floats(0.0, 1.0), optional=True),
    cooldown=fuzz(st.integers(0, 3), optional=True),
    min_scale=fuzz(st.floats(0.0, 1.0), optional=True),
    accumulation_size=fuzz(st.integers(1, 3), optional=True),
  )
)
def test_reduce_on_plateau(kwargs):
  tx = build(osd.reduce_on_plateau, **kwargs)
  if tx is not None:
    tx = optax.chain(osd.scale_by_tracked_learning_rate(1.0), tx)
    rates, _ = first_rates(tx, num_updates=4, value=1.0)
    alpha = float(np.float32(kwargs.get('decay_factor', 10.0)))
    floor = float(kwargs.get('min_scale', 0.0))
    with np.errstate(over='ignore', under='ignore'):
      exact = np.maximum(alpha ** -np.arange(4.0), floor)  # at most one cut per call
    assert_usable(rates, exact)


@given(
  arguments(learning_rate=POSITIVE, seed=fuzz(st.integers(0, 2**32 - 1), optional=True)),
)
def test_sample_iterate(kwargs):
  tx = build(osd.sample_iterate, **kwargs)
  if tx is not None:
    state = tx.init(jnp.zeros(2))
    for _ in range(2):
      _, state = tx.update(jnp.ones(2), state, jnp.zeros(2))
    assert np.isfinite(float(state.total_weight)) and float(state.total_weight) > 0


@given(fuzz(st.integers(0, 2**31 - 1)))
def test_suffix_average(start_step):
  tx = build(osd.suffix_average, start_step=start_step)
  if tx is not None:
    state = tx.init(jnp.zeros(2))
    _, state = tx.update(jnp.ones(2), state, jnp.zeros(2))
    assert np.all(np.isfinite(osd.output_params(state)))


@given(fuzz(st.integers(1, 10**12)), fuzz(st.floats(1.01, 100.0)))
def test_horizon_num_stages(total_steps, decay_factor):
  stages = build(osd.horizon_num_stages, total_steps=total_steps, decay_factor=decay_factor)
  if stages is not None:
    assert isinstance(stages, int) and 1 <= stages <= total_steps

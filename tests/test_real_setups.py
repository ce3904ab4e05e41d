"""Real setups in float32 and float64: the matrix's cases, and the review's setups one by one.

The matrix and what each case checks: ``tests/real_setups.py``. Half precision:
``test_real_setups_half_precision.py``; vmap, donation and sharding:
``test_real_setups_execution.py``.
"""

from __future__ import annotations

import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_stepdecay as osd
from tests import real_setups as rs


@pytest.mark.parametrize(
  ('subject_name', 'wrapper_name', 'dtype_name'),
  rs.cases(['float32', 'float64_x64', 'float32_x64']),
)
def test_trains_in_every_full_precision_dtype_and_wrapper(subject_name, wrapper_name, dtype_name):
  rs.check_case(subject_name, wrapper_name, dtype_name)


# The setups of the review, pinned one by one.


@pytest.mark.parametrize(
  'rule',
  [
    lambda: osd.suffix_average(0),
    lambda: osd.stage_average(osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10**6)),
  ],
  ids=['suffix_average', 'stage_average'],
)
def test_bfloat16_average_keeps_moving_after_a_thousand_iterates(rule):
  tx = rule()
  params = jnp.ones(3, jnp.bfloat16)
  state = tx.init(params)
  update = jax.jit(tx.update)
  for value in [1.0] * 1000 + [2.0] * 1000:
    target = jnp.full(3, value, jnp.bfloat16)
    _, state = update(target - params, state, params)  # the update lands on the target
  average = osd.output_params(state)
  assert average.dtype == jnp.bfloat16
  chex.assert_trees_all_close(average, jnp.full(3, 1.5, jnp.bfloat16), rtol=0, atol=0)


def test_inject_hyperparams_accepts_hyperparameters_cast_to_bfloat16():
  tx = optax.inject_hyperparams(osd.step_decay_sgd)(
    init_value=0.1, decay_factor=10.0, stage_length=5
  )
  params = jnp.ones(3, jnp.bfloat16)
  state = tx.init(params)
  assert state.hyperparams['init_value'].dtype == jnp.bfloat16  # optax's cast
  updates, state = tx.update(params, state, params)
  assert updates.dtype == jnp.bfloat16
  chex.assert_trees_all_close(osd.current_learning_rate(state), jnp.float32(0.1), rtol=4e-3)


def two_groups(first, second):
  """optax.multi_transform of two groups: 'a' holds w, 'b' holds b."""
  return optax.multi_transform({'a': first, 'b': second}, rs.GROUPS)


def test_readers_answer_for_every_group():
  def group(learning_rate, *extra):
    sgd = osd.step_decay_sgd(learning_rate, decay_factor=10.0, stage_length=4)
    return optax.chain(sgd, *extra, osd.suffix_average(0))

  plateau = osd.reduce_on_plateau(decay_factor=2.0, patience=0)
  tx = optax.with_extra_args_support(two_groups(group(1.0), group(0.1, plateau)))
  params = rs.initial_params(jnp.float32)
  state = tx.init(params)
  iterates = []
  for _ in range(6):
    updates, state = tx.update(params, state, params, value=1.0)  # a flat metric: cut, cut...
    params = optax.apply_updates(params, updates)
    iterates.append(params)
  rates = osd.current_learning_rate(state)
  # Count 5 is in the second stage; group b's plateau cut at every flat metric but the first.
  chex.assert_trees_all_close(
    rates, {'a': jnp.float32(0.1), 'b': jnp.float32(0.01 / 2**5)}, rtol=1e-6, atol=0
  )
  expected_average = jax.tree.map(lambda *xs: sum(xs) / len(xs), *iterates)
  chex.assert_trees_all_close(osd.output_params(state), expected_average, rtol=1e-6, atol=1e-7)


def test_readers_refuse_a_masked_state():
  tx = optax.masked(
    optax.chain(osd.step_decay_sgd(0.1, decay_factor=10.0, stage_length=4), osd.suffix_average(0)),
    {'w': True, 'b': False},
  )
  state = tx.init(rs.initial_params(jnp.float32))
  with pytest.raises(ValueError, match=r'inside an optax.masked state .* inner_state'):
    osd.current_learning_rate(state)
  with pytest.raises(ValueError, match=r'inside an optax.masked state .* inner_state'):
    osd.output_params(state)
  osd.current_learning_rate(state.inner_state)  # where the message points


def test_output_params_refuses_a_group_without_an_output_rule():
  sgd = osd.step_decay_sgd(0.1, decay_factor=10.0, stage_length=4)
  tx = two_groups(optax.chain(sgd, osd.suffix_average(0)), sgd)
  with pytest.raises(ValueError, match=r"at \['b'\] are in an optax.multi_transform group without"):
    osd.output_params(tx.init(rs.initial_params(jnp.float32)))


def test_current_learning_rate_refuses_rates_inside_and_outside_groups():
  tracked = osd.scale_by_tracked_learning_rate(0.5)
  tx = optax.chain(two_groups(tracked, tracked), osd.scale_by_tracked_learning_rate(0.1))
  with pytest.raises(ValueError, match=r"both outside parameter groups .* \['a', 'b'\]"):
    osd.current_learning_rate(tx.init(rs.initial_params(jnp.float32)))


@pytest.mark.parametrize(
  'subject_name', ['step_decay_sgd', 'step_decay_schedule', 'scale_by_cooldown']
)
def test_float32_updates_under_x64_make_no_float64_copies(subject_name, x64):
  del x64
  subject = rs.SUBJECTS[subject_name]
  tx = rs.plain(subject, subject.hyperparams)
  params = rs.initial_params(jnp.float32)
  closed = jax.make_jaxpr(rs.step_fn(tx, subject))(params, tx.init(params), jnp.int32(3))
  wide = [
    eqn for var, eqn in rs.param_sized_float_vars(closed.jaxpr) if var.aval.dtype == jnp.float64
  ]
  assert not wide, wide


@pytest.mark.parametrize('num_stages', [3, np.int64(3), jnp.array(3), jnp.array(3, jnp.uint32)])
def test_num_stages_may_be_an_integer_array(num_stages):
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=5, num_stages=num_stages)
  chex.assert_trees_all_close(
    schedule(jnp.array([0, 5, 10, 50])), jnp.array([1.0, 0.5, 0.25, 0.25]), rtol=0, atol=0
  )
  tx = osd.step_decay_sgd(1.0, decay_factor=2.0, stage_length=5, num_stages=num_stages)
  tx.init(jnp.zeros(2))


def public_factories():
  return [
    getattr(osd, name)
    for name in osd.__all__
    if inspect.isfunction(getattr(osd, name)) and name not in ('count_dtype',)
  ]


@pytest.mark.parametrize('factory', public_factories(), ids=lambda f: f.__name__)
def test_every_argument_after_the_first_is_keyword_only(factory):
  parameters = list(inspect.signature(factory).parameters.values())[1:]
  positional = [p.name for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY]
  assert not positional, f'{factory.__name__} takes {positional} by position'

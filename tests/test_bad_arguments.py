"""Every impossible argument raises ValueError at construction, naming it and its value."""

import math

import jax
import jax.numpy as jnp
import pytest

import optax_stepdecay as osd

step = osd.step_decay_schedule
horizon = osd.fixed_horizon_step_decay_schedule
multistep = osd.multistep_decay_schedule
stagewise = osd.stagewise_schedule
geometric = osd.geometric_stage_decay_schedule
base = osd.step_decay_schedule(1.0, 2.0, 10)

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
]


@pytest.mark.parametrize(('factory', 'args', 'kwargs', 'message'), CASES)
def test_bad_argument_raises_value_error_naming_it(factory, args, kwargs, message):
  with pytest.raises(ValueError) as error:
    factory(*args, **kwargs)
  assert message in str(error.value)


def test_torch_gamma_gets_a_reciprocal_hint():
  with pytest.raises(ValueError, match=r'pass decay_factor=10'):
    osd.step_decay_schedule(0.1, 0.1, 30)


def test_traced_hyperparameters_pass_through_unchecked():
  def value(alpha, length):
    return osd.step_decay_schedule(1.0, alpha, length)(20)

  assert float(jax.jit(value)(2.0, 10)) == 0.25


def test_traced_decay_factor_cannot_set_the_horizon():
  def value(alpha):
    return osd.fixed_horizon_step_decay_schedule(1.0, 100, alpha)(0)

  with pytest.raises(ValueError, match='decay_factor must be a concrete value'):
    jax.jit(value)(2.0)

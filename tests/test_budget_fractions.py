"""Milestones and phase lengths as fractions of a budget: floor(f * T), exact, on the host."""

import json
from decimal import Decimal
from fractions import Fraction

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd


def test_cut_at_half_and_three_quarters_of_the_budget():
  schedule = osd.multistep_decay_schedule(
    1.0, milestones=[0.5, 0.75], decay_factor=10.0, total_steps=1001
  )
  assert schedule.change_points() == [500, 750]  # floor(500.5), floor(750.75)
  chex.assert_trees_all_close(
    schedule(jnp.array([499, 500, 749, 750])), np.asarray([1.0, 0.1, 0.1, 0.01]), rtol=1e-7
  )


def test_fractions_are_read_as_the_decimal_typed_not_the_binary_float():
  assert int(0.29 * 100) == 28  # what float arithmetic gives
  for fraction in (0.29, np.float32(0.29), np.float64(0.29), Fraction(29, 100), Decimal('0.29')):
    schedule = osd.multistep_decay_schedule(1.0, milestones=[fraction], total_steps=100)
    assert schedule.change_points() == [29], fraction
  assert osd.multistep_decay_schedule(
    1.0, milestones=[Fraction(1, 3)], total_steps=10
  ).change_points() == [3]


@given(st.integers(0, 10**6), st.integers(1, 2**32 - 1))
def test_property_decimal_fraction_gives_the_exact_floor(numerator, total):
  fraction = numerator / 10**6  # a float whose shortest decimal is numerator / 10**6
  step = numerator * total // 10**6
  wsd = osd.wsd_schedule(1.0, total_steps=total, decay_fraction=fraction, decay_shape='step')
  assert wsd.change_points() == [b for b in (total - step,) if 0 < b < total + 1]
  multistep = osd.multistep_decay_schedule(
    1.0, milestones=[fraction], decay_factor=2.0, total_steps=total
  )
  assert multistep.change_points() == ([step] if step > 0 else [])


def test_zero_and_one_are_the_ends_of_the_budget():
  schedule = osd.multistep_decay_schedule(1.0, milestones=[0, 1], decay_factor=2.0, total_steps=7)
  chex.assert_trees_all_close(
    schedule(jnp.array([0, 6, 7])), np.asarray([0.5, 0.5, 0.25]), rtol=1e-7
  )


def test_json_keeps_the_fractions_and_step_milestones_keep_their_old_form():
  schedule = osd.multistep_decay_schedule(
    1.0, milestones=[0.5, 0.75], decay_factor=10.0, total_steps=1000
  )
  config = json.loads(schedule.to_json())
  assert config['args']['milestones'] == [0.5, 0.75] and config['args']['total_steps'] == 1000
  assert osd.schedule_from_json(schedule.to_json()).change_points() == [500, 750]
  assert 'total_steps' not in osd.multistep_decay_schedule(1.0, milestones=[5]).to_dict()['args']


@pytest.mark.parametrize(
  ('milestones', 'kwargs', 'message'),
  [
    ([0.5, 0.5001], {'total_steps': 1000}, 'milestones must be increasing fractions on distinct'),
    ([0.75, 0.5], {'total_steps': 1000}, 'steps [750, 500]'),
    ([0.5, 1.5], {'total_steps': 1000}, 'milestones[1] must be a fraction in [0, 1]'),
    ([-0.1], {'total_steps': 1000}, 'milestones[0] must be a fraction in [0, 1]'),
    ([float('nan')], {'total_steps': 1000}, 'milestones[0] must be finite'),
    ([0.5], {'total_steps': 0}, 'total_steps must be >= 1, got 0'),
    ([0.5], {'total_steps': 100.0}, 'total_steps must be an integer, got 100.0'),
    ([0.5], {'total_steps': 100, 'steps_per_epoch': 10}, 'at most one of steps_per_epoch and'),
    ([1.0], {'total_steps': 2**32}, 'milestones[0]=1.0 puts a stage boundary at count 4294967296'),
    ([0.5], {}, 'milestones[0] must be an integer, got 0.5'),
  ],
)
def test_bad_fractions_raise_value_error_naming_the_argument(milestones, kwargs, message):
  with pytest.raises(ValueError) as error:
    osd.multistep_decay_schedule(1.0, milestones=milestones, **kwargs)
  assert message in str(error.value)

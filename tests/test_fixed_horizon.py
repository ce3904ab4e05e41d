"""The paper's horizon prescription: N = floor(log_alpha T) stages of T // N steps."""

from fractions import Fraction

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import optax_stepdecay as osd


def brute_force_num_stages(total_steps, alpha):
  """Largest N with alpha**N <= T by exact rational arithmetic, in [1, T]."""
  n, power = 0, Fraction(alpha)
  while power <= total_steps:
    n, power = n + 1, power * Fraction(alpha)
  return max(1, min(n, total_steps))


@pytest.mark.parametrize(
  ('total_steps', 'alpha', 'expected'),
  [
    (1000, 10.0, 3),
    (243, 3, 5),
    (242, 3, 4),
    (1, 2.0, 1),
    (2, 2.0, 1),
    (4, 2.0, 2),
    (10**6, 10, 6),
    (60_000, 6, 6),
    (2**40, 2.0, 40),
    (3**30, 3, 30),
    (3**30 - 1, 3, 29),
  ],
)
def test_horizon_num_stages_exact_where_float_log_fails(total_steps, alpha, expected):
  assert osd.horizon_num_stages(total_steps, decay_factor=alpha) == expected


@given(total_steps=st.integers(1, 10**12), alpha=st.integers(2, 20))
def test_property_horizon_equals_integer_brute_force(total_steps, alpha):
  assert osd.horizon_num_stages(total_steps, decay_factor=alpha) == brute_force_num_stages(
    total_steps, alpha
  )


@given(total_steps=st.integers(1, 10**9), alpha=st.floats(1.01, 50.0))
def test_property_horizon_equals_rational_brute_force(total_steps, alpha):
  assert osd.horizon_num_stages(total_steps, decay_factor=alpha) == brute_force_num_stages(
    total_steps, alpha
  )


def test_stages_of_the_prescription():
  schedule = osd.fixed_horizon_step_decay_schedule(0.5, total_steps=60_000, decay_factor=6.0)
  # The paper's MNIST setting: alpha = 6 and T = 60,000 give 6 stages of 10,000 steps.
  assert schedule.num_stages == 6
  assert schedule.change_points() == [10_000, 20_000, 30_000, 40_000, 50_000]
  rows = schedule.stages(60_000)
  chex.assert_trees_all_close([r.value for r in rows], [0.5 / 6**k for k in range(6)], rtol=1e-6)
  assert rows[-1] == (50_000, 60_000, rows[-1].value, None)


def test_last_stage_runs_to_the_end_and_beyond():
  schedule = osd.fixed_horizon_step_decay_schedule(
    1.0, total_steps=1000, decay_factor=10.0
  )  # S = 333, N = 3
  assert schedule.change_points() == [333, 666]
  values = schedule(jnp.array([332, 333, 665, 666, 999, 1000, 10**6]))
  chex.assert_trees_all_close(values, np.asarray([1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01]), rtol=1e-6)


def test_explicit_num_stages_overrides_and_half_log_variant():
  total, alpha = 46_875, 3.0  # the authors' deep-net rule: floor(log_3 T / 2) = 4 stages
  half = max(1, osd.horizon_num_stages(total, decay_factor=alpha) // 2)
  assert half == 4
  schedule = osd.fixed_horizon_step_decay_schedule(
    1.0, total_steps=total, decay_factor=alpha, num_stages=half
  )
  assert schedule.change_points() == [11_718, 23_436, 35_154]


def test_decay_factor_one_needs_num_stages():
  with pytest.raises(ValueError, match='decay_factor=1'):
    osd.fixed_horizon_step_decay_schedule(1.0, total_steps=100, decay_factor=1.0)
  schedule = osd.fixed_horizon_step_decay_schedule(
    1.0, total_steps=100, decay_factor=1.0, num_stages=4
  )
  assert float(schedule(99)) == 1.0


def test_more_stages_than_steps_is_rejected():
  with pytest.raises(ValueError, match='num_stages=11'):
    osd.fixed_horizon_step_decay_schedule(1.0, total_steps=10, decay_factor=2.0, num_stages=11)


def test_decay_factor_close_to_one_caps_stages_at_total_steps():
  assert osd.horizon_num_stages(50, decay_factor=1.001) == 50

"""auto_step_decay's stationarity test on sequences whose answer is known.

The history a stage records holds, at each batch end k, the running sums of
z (which telescope to s_k - s_0, s = |x - c|^2) and of v = |u|^2. Here s is
drawn directly: a stationary AR(1) sequence must pass, a drifting one must
fail, at the documented confidence.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optax_stepdecay import _auto

BATCHES = 40  # batch ends in the stage; the window holds the latest 30
V_PER_BATCH = 1.0
TOLERANCE = 0.5
REPLICATES = 4000


def history_of(s: np.ndarray) -> np.ndarray:
  """The recorded history of a stage whose s at the batch ends is s[:, 1:], from s[:, 0]."""
  v = V_PER_BATCH * np.arange(1, s.shape[-1])
  return np.stack([s[:, 1:] - s[:, :1], np.broadcast_to(v, s[:, 1:].shape)], axis=-1)


def pass_rate(s: np.ndarray, confidence: float) -> float:
  test = jax.vmap(lambda h: _auto.stationarity_test(h, jnp.int32(BATCHES), confidence, TOLERANCE))
  return float(jnp.mean(test(jnp.asarray(history_of(s), jnp.float32))))


def ar1(rng: np.random.Generator, rho: float, sd: float) -> np.ndarray:
  """REPLICATES stationary AR(1) sequences of BATCHES + 1 values with marginal sd `sd`."""
  s = np.empty((REPLICATES, BATCHES + 1))
  s[:, 0] = rng.normal(0, sd, REPLICATES)
  for k in range(1, BATCHES + 1):
    s[:, k] = rho * s[:, k - 1] + rng.normal(0, sd * np.sqrt(1 - rho**2), REPLICATES)
  return s


def window_bound() -> float:
  """tolerance times the window's sum of v."""
  return TOLERANCE * V_PER_BATCH * (BATCHES - BATCHES // 4 - 1)


@pytest.mark.parametrize('rho', [0.0, 0.5])
def test_stationary_ar1_sequence_passes(rho):
  # s fluctuates with sd 1/6 of the window's bound: its change is small against it.
  s = ar1(np.random.default_rng(0), rho, window_bound() / 6)
  assert pass_rate(s, 0.95) > 0.95


@pytest.mark.parametrize('confidence', [0.9, 0.95, 0.99])
def test_drift_at_the_tolerance_passes_at_most_the_one_sided_error_rate(confidence):
  # The expected change across the window is exactly the bound: an equivalence
  # test passes it with probability at most (1 - confidence) / 2.
  rng = np.random.default_rng(1)
  noise = ar1(rng, 0.5, window_bound() / 6)
  window_lengths = BATCHES - BATCHES // 4 - 1  # batch-to-batch steps inside the window
  trend = window_bound() / window_lengths * np.arange(BATCHES + 1)
  rate = pass_rate(noise + trend, confidence)
  assert rate <= (1 - confidence) / 2, rate


def test_clear_drift_never_passes():
  noise = ar1(np.random.default_rng(2), 0.5, window_bound() / 6)
  trend = 3 * window_bound() / BATCHES * np.arange(BATCHES + 1)
  assert pass_rate(noise + trend, 0.95) == 0.0


def test_noise_too_large_for_the_tolerance_does_not_pass():
  # Stationary, but s varies so much that the window cannot resolve the bound.
  s = ar1(np.random.default_rng(3), 0.0, window_bound())
  assert pass_rate(s, 0.95) < 0.01


def test_terms_add_up_to_the_test():
  s = ar1(np.random.default_rng(4), 0.5, window_bound() / 6)[:8]
  for history in history_of(s):
    terms = _auto.stationarity_terms(jnp.asarray(history), jnp.int32(BATCHES), 0.95, TOLERANCE)
    assert int(terms.window) == BATCHES - BATCHES // 4
    chex.assert_trees_all_close(terms.bound, window_bound(), rtol=1e-6)
    expected = abs(float(terms.change)) + float(terms.half_width) < float(terms.bound)
    passed = _auto.stationarity_test(jnp.asarray(history), jnp.int32(BATCHES), 0.95, TOLERANCE)
    assert bool(passed) == expected

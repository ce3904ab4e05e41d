"""Shared test settings.

Test conventions: arrays and trees (params, updates, states, schedule values over counts) are
compared with chex.assert_trees_all_close / assert_trees_all_equal, rtol and atol written out
(numpy.testing's default was rtol=1e-7); lists meeting an array are wrapped in np.asarray, as
chex compares tree structures. Scalar facts (an int, a bool, an exact float) are plain asserts,
errors pytest.raises(..., match=...). Cases use pytest.mark.parametrize, except absl's
parameterized in chex.TestCase classes with @chex.variants.
"""

import contextlib
import importlib
import os

import hypothesis
import jax
import pytest

# JAX compiles on first use, so examples are slow to start: no deadline, and
# enough examples to find edge cases while keeping CI fast.
hypothesis.settings.register_profile('ci', deadline=None, max_examples=60, derandomize=True)
hypothesis.settings.load_profile('ci')


@contextlib.contextmanager
def x64_enabled():
  """Turns on 64-bit JAX types for the duration of the block."""
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)
  try:
    yield
  finally:
    jax.config.update('jax_enable_x64', previous)


@pytest.fixture
def x64():
  with x64_enabled():
    yield


def oracles_required() -> bool:
  """Whether a missing reference implementation fails the run instead of skipping its tests.

  Required in CI (``CI=true``), so parity tests cannot vanish there; optional locally.
  ``OPTAX_STEPDECAY_ORACLES=required`` or ``=optional`` overrides both.
  """
  setting = os.environ.get('OPTAX_STEPDECAY_ORACLES')
  if setting is None:
    return os.environ.get('CI', '').lower() in ('true', '1')
  if setting not in ('required', 'optional'):
    raise ValueError(f"OPTAX_STEPDECAY_ORACLES must be 'required' or 'optional', got {setting!r}.")
  return setting == 'required'


def oracle(module: str):
  """Imports the reference implementation ``module`` a parity test compares with.

  Without it the test skips locally and fails where oracles are required.
  """
  try:
    return importlib.import_module(module)
  except ImportError as error:
    message = f'{module}, a reference implementation of the parity tests, is missing: {error}'
    if oracles_required():
      pytest.fail(f'{message}. .ci/run installs it.')
    pytest.skip(message)

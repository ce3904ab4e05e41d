"""Shared test settings."""

import contextlib

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

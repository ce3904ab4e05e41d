"""Flax examples for optax_stepdecay."""

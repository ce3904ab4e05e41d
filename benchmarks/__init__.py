"""Benchmarks of optax_stepdecay: convergence rates (`benchmarks.theory`) and cost (`perf`)."""

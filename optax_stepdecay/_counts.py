"""Exact integer handling of step counts.

Every schedule in this package turns the count it is given into a
non-negative integer array of one canonical dtype before doing any
arithmetic on it: ``uint32`` by default (which holds every int32 and uint32
count exactly) and ``int64`` when ``jax_enable_x64`` is on. Stage indices are
then computed with integer operations only, so they are exact for every
representable count.

It also holds the dtype rules of floats: schedule values (and step sizes) in
:func:`float_dtype`, statistics in :func:`statistics_dtype`.
"""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


def count_dtype() -> np.dtype:
  """The integer dtype schedules compute stage indices in.

  Every count is converted to it before any arithmetic, so stage indices are
  exact for every representable count: ``uint32`` holds every int32 and
  uint32 count, ``int64`` (under ``jax_enable_x64``) every int64 count.

  Returns:
    ``numpy.dtype('uint32')``, or ``numpy.dtype('int64')`` when
    ``jax_enable_x64`` is on.

  References:
    Optax counts updates in int32 and Flax's ``nnx.Optimizer`` in uint32;
    both fit this dtype exactly: https://optax.readthedocs.io
  """
  return np.dtype(np.int64) if jax.config.read('jax_enable_x64') else np.dtype(np.uint32)


def float_dtype() -> np.dtype:
  """The dtype of schedule values: float32, or float64 under x64.

  The library's one value dtype: schedules return it, and the transformations
  keep step sizes and the statistics of :func:`reduce_on_plateau` (which sees
  no parameters) in it.
  """
  return np.dtype(np.float64) if jax.config.read('jax_enable_x64') else np.dtype(np.float32)


def statistics_dtype(params: Any) -> np.dtype:
  """The dtype statistics of ``params`` accumulate in: theirs, promoted to at least float32.

  float64 parameters (under x64) give float64, float32 and lower-precision
  ones (bfloat16, float16) float32; complex parameters their real dtype.
  Read from the dtypes of the leaves, never from their values.
  """
  promoted = jnp.promote_types(optax.tree.dtype(params, 'promote'), jnp.float32)
  return np.dtype(jnp.finfo(promoted).dtype)


def accumulator_dtype(dtype: Any) -> np.dtype:
  """The dtype a running average of arrays of ``dtype`` is kept in: ``dtype``, at least float32."""
  return np.dtype(jnp.promote_types(dtype, jnp.float32))


def scale_updates(factor: jax.Array, updates: Any) -> Any:
  """Every leaf of ``updates`` times the scalar ``factor``, in the leaf's own dtype.

  The factor is cast to each leaf's dtype first, as ``optax.scale_by_learning_rate``
  does: a float32 (or, under x64, float64) step size scaling bfloat16 or float32
  updates makes no wider copy of a parameter-sized array.
  """
  return jax.tree.map(lambda u: factor.astype(u.dtype) * u, updates)


def new_count() -> jax.Array:
  """A fresh int32 zero for a state's counter.

  Each field gets its own buffer: fields sharing one could not be donated
  (``jax.jit(..., donate_argnums=...)`` refuses to donate a buffer twice).
  """
  return jnp.zeros([], jnp.int32)


def max_count() -> int:
  """The largest count the canonical dtype holds."""
  return int(np.iinfo(count_dtype()).max)


def is_traced(value: object) -> bool:
  """Whether ``value`` is a JAX tracer (its value is unknown until run time)."""
  return isinstance(value, jax.core.Tracer)


def as_float(value: object, dtype: Any = None) -> np.ndarray | jax.Array:
  """A real hyperparameter in ``dtype`` (:func:`float_dtype` by default).

  A NumPy array when concrete, a JAX array when traced. Python ints in float
  arithmetic would be weakly typed int32 in JAX and overflow above 2^31 - 1.
  """
  dtype = float_dtype() if dtype is None else dtype
  if isinstance(value, jax.Array):  # traced values included
    return jnp.asarray(value, dtype)
  return np.asarray(value, dtype)


def _host_count(count: object) -> np.ndarray:
  """Converts a Python or NumPy count on the host, exactly."""
  array = np.asarray(count)
  if array.dtype.kind == 'f':
    return array.astype(float_dtype())
  # Compared as Python ints: exact whatever their size or NumPy dtype.
  values = [max(int(c), 0) for c in array.reshape(-1).tolist()]
  limit = max_count()
  for value in values:
    if value > limit:
      raise OverflowError(
        f'count={value} exceeds the largest count {limit} of the '
        f'{count_dtype()} counts schedules use; enable jax_enable_x64 '
        'for int64 counts.'
      )
  return np.array(values, dtype=count_dtype()).reshape(array.shape)


def as_count(count: object) -> jax.Array:
  """Returns ``count`` as a non-negative integer array of :func:`count_dtype`.

  Integer counts of any dtype keep their exact value; negative counts become
  0. Float counts are floored, then clipped to ``[0, max_count()]``; a NaN
  count gives an unspecified count (schedules return NaN for it, see
  :func:`nan_mask`).

  Args:
    count: a step count: a JAX or NumPy array of any integer, unsigned,
      boolean or float dtype, or a Python number.

  Returns:
    An array of the same shape and dtype :func:`count_dtype`.

  Raises:
    OverflowError: a Python or NumPy integer count exceeds ``max_count()``.
  """
  if not isinstance(count, jax.Array):
    count = _host_count(count)
  count = jnp.asarray(count)
  target = count_dtype()
  if jnp.issubdtype(count.dtype, jnp.floating):
    floored = jnp.floor(count)
    limit = float(np.iinfo(target).max)  # rounds up to a power of two
    clipped = jnp.clip(floored, 0, None).astype(target)
    return jnp.where(floored >= limit, np.array(np.iinfo(target).max, target), clipped)
  if count.dtype == target:
    return count
  if count.dtype == jnp.bool_:
    return count.astype(target)
  if jnp.issubdtype(count.dtype, jnp.unsignedinteger):
    if np.iinfo(count.dtype).max > np.iinfo(target).max:  # uint64 -> int64
      count = jnp.minimum(count, np.array(np.iinfo(target).max, count.dtype))
    return count.astype(target)
  return jnp.maximum(count, 0).astype(target)


def nan_mask(count: object) -> jax.Array | None:
  """A mask of NaN counts, or None when the count cannot hold NaN."""
  if isinstance(count, numbers.Integral):
    return None
  dtype = jnp.result_type(count)
  if not jnp.issubdtype(dtype, jnp.floating):
    return None
  return jnp.isnan(jnp.asarray(count))


def constant_fits(value: object) -> bool:
  """Whether a concrete integer hyperparameter is representable as a count.

  A boundary, stage length or offset above :func:`max_count` can never be
  reached by a count, so callers treat it as "never" instead of letting the
  conversion overflow. Traced values always fit: they already have an
  integer dtype no wider than the count's.
  """
  if is_traced(value):
    return True
  return bool(np.all(np.asarray(value, dtype=object) <= max_count()))


def as_count_constant(value: object) -> jax.Array:
  """A hyperparameter known to fit (see :func:`constant_fits`) as a count."""
  if is_traced(value) or isinstance(value, jax.Array):
    return jnp.asarray(value).astype(count_dtype())
  return jnp.asarray(np.asarray(value, dtype=np.int64).astype(count_dtype()))

"""Real setups' execution: ``jax.vmap`` over a hyperparameter, donated buffers, and parameters
sharded over 8 host devices (in a subprocess, as XLA reads its device count once).
"""

from __future__ import annotations

import textwrap

import chex
import jax
import jax.numpy as jnp
import pytest

from tests import processes
from tests import real_setups as rs

EXECUTION_DTYPES = ['float32', 'bfloat16']


@pytest.mark.parametrize('dtype_name', EXECUTION_DTYPES)
@pytest.mark.parametrize('subject_name', list(rs.SUBJECTS))
def test_vmap_over_a_hyperparameter_equals_separate_runs(subject_name, dtype_name):
  subject = rs.SUBJECTS[subject_name]
  dtype, _ = rs.DTYPES[dtype_name]
  name = subject.scaled
  values = jnp.array([subject.hyperparams[name], subject.hyperparams[name] * rs.SECOND_GROUP_SCALE])

  def run(value):
    hyperparams = subject.hyperparams | {name: value}
    return rs.train(rs.plain(subject, hyperparams), subject, rs.initial_params(dtype))

  swept = jax.vmap(run)(values)
  for i, value in enumerate(values.tolist()):
    one = run(value)
    chex.assert_trees_all_close(
      jax.tree.map(lambda x, i=i: x[i], swept), one, rtol=rs.tolerance_of(dtype), atol=1e-6
    )


@pytest.mark.parametrize('dtype_name', EXECUTION_DTYPES)
@pytest.mark.parametrize('subject_name', list(rs.SUBJECTS))
def test_donated_state_and_params_give_the_same_step(subject_name, dtype_name):
  subject = rs.SUBJECTS[subject_name]
  dtype, _ = rs.DTYPES[dtype_name]
  tx = rs.plain(subject, subject.hyperparams)
  step = rs.step_fn(tx, subject)
  params = rs.initial_params(dtype)
  expected = jax.jit(step)(params, tx.init(params), jnp.int32(0))
  donated = jax.jit(step, donate_argnums=(0, 1))
  params, state = rs.initial_params(dtype), tx.init(rs.initial_params(dtype))
  for t in range(3):  # the donated buffers are reused from the second call on
    params, state, updates = donated(params, state, jnp.int32(t))
    if t == 0:
      chex.assert_trees_all_equal((params, state, updates), expected)


SHARDED_SCRIPT = textwrap.dedent(
  """
  import jax, jax.numpy as jnp, numpy as np, optax
  from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
  from tests import real_setups as t

  assert jax.device_count() == 8, jax.devices()
  mesh = Mesh(np.array(jax.devices()).reshape(8), ('data',))
  sharding = NamedSharding(mesh, P('data'))
  shapes = {'w': (8, 16), 'b': (16,)}
  for dtype in (jnp.float32, jnp.bfloat16):
    for name, subject in t.SUBJECTS.items():
      tx = t.WRAPPERS['plain'](subject)
      params = {
        k: jax.device_put(jnp.linspace(-1, 1, int(np.prod(s))).reshape(s).astype(dtype), sharding)
        for k, s in shapes.items()
      }
      state = jax.jit(tx.init)(params)
      step = jax.jit(t.step_fn(tx, subject), donate_argnums=(1,))
      for step_count in range(3):
        params, state, updates = step(params, state, jnp.int32(step_count))
      for leaf in jax.tree.leaves(state) + jax.tree.leaves(updates) + jax.tree.leaves(params):
        if leaf.shape in shapes.values():
          assert leaf.sharding.is_equivalent_to(sharding, leaf.ndim), (name, leaf.sharding)
      unsharded = jax.tree.map(np.asarray, params)
      assert all(np.all(np.isfinite(np.asarray(v, np.float32))) for v in unsharded.values()), name
  print('sharded ok')
  """
)


def test_state_keeps_the_parameters_sharding_over_8_devices():
  result = processes.run_python(['-c', SHARDED_SCRIPT], host_devices=8)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'sharded ok' in result.stdout

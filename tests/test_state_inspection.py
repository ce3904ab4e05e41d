"""Reading and writing this package's states inside any optimizer state (the _state helper).

current_learning_rate, output_params and start_cooldown all find their states through
optax_stepdecay._state, on the nestings users build: chain, inject_hyperparams, MultiSteps,
multi_transform and Flax nnx.Optimizer.
"""

import ast
from pathlib import Path
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optax_stepdecay as osd
from optax_stepdecay import _state

SCHEDULE = osd.step_decay_schedule(
  1.0, decay_factor=2.0, stage_length=2
)  # 1, 1, 0.5, 0.5, 0.25, ...
METRICS = (3.0, 2.0, 2.0, 1.0)  # the third is no improvement: reduce_on_plateau halves its scale
# Updates 0..3: the schedule gives 1, 1, 0.5, 0.5; a linear cooldown over 2 updates started
# before update 2 makes that 1, 1, 0.5, 0.25; the plateau's scale is 1, 1, 0.5, 0.5.
RATES = (1.0, 1.0, 0.25, 0.125)


def inner_tx():
  """Every state the helpers read: a cooldown's rate, a plateau's scale and an average."""
  return optax.chain(
    osd.scale_by_cooldown(SCHEDULE),
    osd.reduce_on_plateau(decay_factor=2.0, patience=0),
    osd.suffix_average(0),
  )


def wrappers():
  yield 'chain', lambda tx: optax.chain(optax.identity(), tx)
  yield 'inject_hyperparams', lambda tx: optax.inject_hyperparams(lambda: tx)()
  yield 'MultiSteps', lambda tx: optax.MultiSteps(tx, every_k_schedule=2)
  yield (
    'multi_transform',
    lambda tx: optax.multi_transform(
      {'on': tx, 'off': optax.chain(optax.set_to_zero(), osd.suffix_average(0))},
      {'w': 'on', 'b': 'off'},
    ),
  )


WRAPPERS = dict(wrappers())


def run(tx, micro=1):
  """``len(METRICS)`` updates of w, b, each of ``micro`` calls of ``update``."""
  params = {'w': jnp.zeros(2), 'b': jnp.zeros(())}
  state = tx.init(params)
  update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
  for t in range(len(METRICS) * micro):
    if t == 2 * micro:
      state = jax.jit(lambda s: osd.start_cooldown(s, decay_steps=2, shape='linear'))(state)
    metric = METRICS[t // micro]
    updates, state = update(jax.tree.map(jnp.ones_like, params), state, params, metric)
    params = optax.apply_updates(params, updates)
  return params, state


@pytest.mark.parametrize('wrap', WRAPPERS.values(), ids=WRAPPERS.keys())
def test_every_reader_and_writer_works_in_every_nesting(wrap):
  micro = 2 if wrap is WRAPPERS['MultiSteps'] else 1
  params, state = run(wrap(inner_tx()), micro)
  rate = osd.current_learning_rate(state)
  if wrap is WRAPPERS['multi_transform']:  # one rate per group that has one
    assert set(rate) == {'on'}
    rate = rate['on']
  chex.assert_trees_all_close(float(rate), RATES[-1], rtol=1e-7)
  assert int(_state.find(state, [osd.CooldownState])[0].cooldown_start) == 2
  iterates = -np.cumsum(RATES)  # w starts at 0 and every gradient is 1
  chex.assert_trees_all_close(params['w'], jnp.full(2, iterates[-1]), rtol=1e-6)
  # suffix_average(0) averages the iterates the updates produced.
  average = osd.output_params(state)['w']
  chex.assert_trees_all_close(np.asarray(average), np.full(2, iterates.mean()), rtol=1e-6)


def test_flax_nnx_optimizer_holds_variables_that_every_helper_reads_and_writes():
  model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, inner_tx(), wrt=nnx.Param)
  x = jnp.ones((3, 2))

  @nnx.jit
  def step(model, optimizer, metric):
    grads = nnx.grad(lambda m: jnp.mean(m(x)))(model)
    optimizer.update(model, grads, value=metric)
    return osd.current_learning_rate(optimizer.opt_state), osd.output_params(optimizer.opt_state)

  @nnx.jit
  def start(optimizer):
    optimizer.opt_state = osd.start_cooldown(optimizer.opt_state, decay_steps=2, shape='linear')

  rates = []
  for t, metric in enumerate(METRICS):
    if t == 2:
      start(optimizer)
    rate, average = step(model, optimizer, jnp.float32(metric))
    rates.append(float(rate))
  chex.assert_trees_all_close(np.asarray(rates), np.asarray(RATES), rtol=1e-7)
  cooldown = _state.find(optimizer.opt_state, [osd.CooldownState])[0]
  assert isinstance(cooldown.cooldown_start, nnx.Variable)
  assert int(cooldown.cooldown_start[...]) == 2
  kernel = nnx.state(model, nnx.Param)['kernel'][...]
  chex.assert_trees_all_equal_shapes(average['kernel'][...], kernel)


def test_current_learning_rate_reads_the_first_rate_in_tree_order():
  tx = optax.chain(
    osd.scale_by_cooldown(0.1, flip_sign=False),
    osd.auto_step_decay(1.0, decay_factor=1.0),
  )
  state = tx.init(jnp.zeros(2))
  chex.assert_trees_all_close(float(osd.current_learning_rate(state)), 0.1, rtol=1e-7)


def test_our_states_come_before_injected_hyperparameters():
  tx = optax.chain(
    optax.inject_hyperparams(optax.sgd)(learning_rate=0.5),
    osd.scale_by_tracked_learning_rate(0.25),
  )
  state = tx.init(jnp.zeros(1))
  assert float(osd.current_learning_rate(state)) == 0.25
  injected = optax.inject_hyperparams(optax.sgd)(learning_rate=0.5)
  assert float(osd.current_learning_rate(injected.init(jnp.zeros(1)))) == 0.5


def test_output_params_prefers_the_sampled_iterate():
  tx = optax.chain(osd.suffix_average(0), osd.sample_iterate(1.0))
  params = jnp.zeros(1)
  state = tx.init(params)
  for _ in range(3):
    updates, state = tx.update(jnp.ones(1), state, params)
    params = params + updates
  assert osd.output_params(state) is state[1].iterate


class CooldownState(NamedTuple):
  """A foreign class with the name of one of ours."""

  count: jax.Array
  learning_rate: jax.Array


def test_a_foreign_state_with_the_same_class_name_is_not_ours():
  foreign = CooldownState(jnp.zeros([], jnp.int32), jnp.ones([]))
  assert _state.find((foreign,), [osd.CooldownState]) == []
  with pytest.raises(ValueError, match='holds no CooldownState'):
    osd.start_cooldown((foreign,), decay_steps=3)


def test_start_cooldown_starts_each_state_at_its_own_count():
  tx = optax.multi_transform(
    {'a': osd.scale_by_cooldown(1.0), 'b': osd.scale_by_cooldown(2.0)}, {'x': 'a', 'y': 'b'}
  )
  params = {'x': jnp.zeros(1), 'y': jnp.zeros(1)}
  state = tx.init(params)
  _, second = _state.find(state, [osd.CooldownState])
  state = optax.tree.set(state, lambda p, n: n is second, CooldownState=second._replace(count=5))
  state = osd.start_cooldown(state, decay_steps=4)
  starts = sorted(int(s.cooldown_start) for s in _state.find(state, [osd.CooldownState]))
  assert starts == [0, 5]
  assert jax.tree.structure(state) == jax.tree.structure(tx.init(params))


def test_no_module_but_the_helper_walks_optimizer_states():
  # Walking a state by hand means flattening it with an is_leaf test for state classes.
  package = Path(osd.__file__).parent
  for path in package.glob('*.py'):
    if path.name == '_state.py':
      continue
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.keyword):
        assert node.arg != 'is_leaf', f'{path.name}:{node.value.lineno} walks a tree by hand'

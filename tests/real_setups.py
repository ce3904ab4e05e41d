"""The matrix of real setups that the ``test_real_setups*`` modules run.

A subject is a public factory built as a transformation. Each is crossed with parameter dtypes
(float32, bfloat16, float16; float64 and float32 under x64) and wrappers (plain,
``optax.inject_hyperparams``, ``optax.MultiSteps``, ``optax.apply_if_finite``,
``optax.multi_transform`` with two groups on different step sizes, ``optax.masked``).
:func:`check_case` trains a case a few steps in a jitted ``lax.scan`` and checks that

* init and update states have the same tree structure, shapes and dtypes;
* updates have the parameters' dtype, and no parameter-sized value on the way to them is wider
  than the parameters (read from the jaxpr); statistics are at least float32 and no wider than
  the parameters promoted to float32;
* values agree with a float32 run within the dtype's precision;
* the readers answer for every group, or refuse.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optax_stepdecay as osd
from tests.conftest import x64_enabled

NUM_STEPS = 7
# Shapes no scalar statistic or buffer of the library has, so the jaxpr check can tell them apart.
SHAPES = {'w': (3, 5), 'b': (7,)}
GROUPS = {'w': 'a', 'b': 'b'}  # the labels of optax.multi_transform
SECOND_GROUP_SCALE = 0.25  # group 'b' runs on a quarter of group 'a''s step size


@dataclasses.dataclass(frozen=True)
class Subject:
  """A public factory built as a transformation.

  ``build(**hyperparams)`` returns it; ``hyperparams`` are injected by
  ``optax.inject_hyperparams`` and scaled by SECOND_GROUP_SCALE (the
  ``scaled`` ones) in the second group of ``optax.multi_transform``.
  """

  build: Callable[..., optax.GradientTransformation]
  hyperparams: dict[str, Any]
  scaled: str = 'init_value'
  static: tuple[str, ...] = ()  # hyperparameters inject_hyperparams must keep static
  has_rate: bool = True
  has_output: bool = False
  starts_cooldown: bool = False


def _tracked(make_schedule):
  return lambda init_value, decay_factor: osd.scale_by_tracked_learning_rate(
    make_schedule(init_value, decay_factor)
  )


def _with_output(rule):
  def build(init_value):
    schedule = osd.step_decay_schedule(init_value, decay_factor=2.0, stage_length=2)
    return optax.chain(osd.scale_by_tracked_learning_rate(schedule), rule(schedule))

  return build


SUBJECTS = {
  'step_decay_sgd': Subject(
    lambda init_value, decay_factor, momentum, weight_decay: osd.step_decay_sgd(
      init_value,
      decay_factor=decay_factor,
      stage_length=2,
      momentum=momentum,
      nesterov=True,
      weight_decay=weight_decay,
    ),
    dict(init_value=0.1, decay_factor=2.0, momentum=0.9, weight_decay=1e-3),
  ),
  'step_decay_schedule': Subject(
    _tracked(lambda v, a: osd.step_decay_schedule(v, decay_factor=a, stage_length=2)),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'fixed_horizon_step_decay_schedule': Subject(
    _tracked(
      lambda v, a: osd.fixed_horizon_step_decay_schedule(v, total_steps=NUM_STEPS, decay_factor=a)
    ),
    dict(init_value=0.1, decay_factor=2.0),
    static=('decay_factor',),  # it sets the number of stages
  ),
  'multistep_decay_schedule': Subject(
    _tracked(lambda v, a: osd.multistep_decay_schedule(v, milestones=[2, 5], decay_factor=a)),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'stagewise_schedule': Subject(
    lambda init_value: osd.scale_by_tracked_learning_rate(
      osd.stagewise_schedule([2, 5], values=init_value * jnp.array([1.0, 0.5, 0.1]))
    ),
    dict(init_value=0.1),
  ),
  'geometric_stage_decay_schedule': Subject(
    _tracked(
      lambda v, a: osd.geometric_stage_decay_schedule(v, first_stage_length=2, decay_factor=a)
    ),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'with_linear_warmup': Subject(
    _tracked(
      lambda v, a: osd.with_linear_warmup(
        osd.step_decay_schedule(v, decay_factor=a, stage_length=3), warmup_steps=2
      )
    ),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'wsd_schedule': Subject(
    lambda peak_value: osd.scale_by_tracked_learning_rate(
      osd.wsd_schedule(peak_value, warmup_steps=2, stable_steps=2, decay_steps=3)
    ),
    dict(peak_value=0.1),
    scaled='peak_value',
  ),
  'scale_by_cooldown': Subject(
    lambda learning_rate: osd.scale_by_cooldown(learning_rate, end_ratio=0.1),
    dict(learning_rate=0.1),
    scaled='learning_rate',
    starts_cooldown=True,
  ),
  'auto_step_decay': Subject(
    lambda init_value, decay_factor: osd.auto_step_decay(
      init_value, decay_factor=decay_factor, first_check=1
    ),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'reduce_on_plateau': Subject(
    lambda init_value, decay_factor: optax.chain(
      osd.scale_by_tracked_learning_rate(init_value),
      osd.reduce_on_plateau(decay_factor=decay_factor, patience=0),
    ),
    dict(init_value=0.1, decay_factor=2.0),
  ),
  'sample_iterate': Subject(
    lambda init_value: optax.chain(
      osd.scale_by_tracked_learning_rate(init_value), osd.sample_iterate(init_value, seed=1)
    ),
    dict(init_value=0.1),
    has_output=True,
  ),
  'stage_average': Subject(_with_output(osd.stage_average), dict(init_value=0.1), has_output=True),
  'suffix_average': Subject(
    _with_output(lambda schedule: osd.suffix_average(2)), dict(init_value=0.1), has_output=True
  ),
}


def plain(subject: Subject, hyperparams: dict[str, Any]) -> optax.GradientTransformation:
  return subject.build(**hyperparams)


def _second_group(subject: Subject) -> dict[str, Any]:
  hyperparams = dict(subject.hyperparams)
  hyperparams[subject.scaled] *= SECOND_GROUP_SCALE
  return hyperparams


def _multi_steps(tx):
  # MultiSteps.gradient_transformation() would drop reduce_on_plateau's value=.
  multi_steps = optax.MultiSteps(tx, every_k_schedule=2)
  return optax.GradientTransformationExtraArgs(multi_steps.init, multi_steps.update)


WRAPPERS: dict[str, Callable[[Subject], optax.GradientTransformation]] = {
  'plain': lambda s: plain(s, s.hyperparams),
  'inject_hyperparams': lambda s: optax.inject_hyperparams(s.build, static_args=s.static)(
    **s.hyperparams
  ),
  'MultiSteps': lambda s: _multi_steps(plain(s, s.hyperparams)),
  'apply_if_finite': lambda s: optax.apply_if_finite(plain(s, s.hyperparams), 3),
  'multi_transform': lambda s: optax.multi_transform(
    {'a': plain(s, s.hyperparams), 'b': plain(s, _second_group(s))}, GROUPS
  ),
  'masked': lambda s: optax.masked(plain(s, s.hyperparams), {'w': True, 'b': False}),
}

# name -> (parameter dtype, x64)
DTYPES = {
  'float32': (jnp.float32, False),
  'bfloat16': (jnp.bfloat16, False),
  'float16': (jnp.float16, False),
  'float64_x64': (jnp.float64, True),
  'float32_x64': (jnp.float32, True),
}
# How far a run in the dtype may drift from the float32 run over NUM_STEPS steps.
TOLERANCE = {
  jnp.float32: 1e-5,
  jnp.bfloat16: 3e-2,
  jnp.float16: 3e-3,
  jnp.float64: 1e-5,
}


def initial_params(dtype) -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)  # the same values with and without x64
  return {
    name: jnp.asarray(rng.uniform(-1.0, 1.0, shape).astype(np.float32), dtype)
    for name, shape in SHAPES.items()
  }


def gradient(params, t):
  """A deterministic gradient of a quadratic, with a wiggle that changes with the step."""
  return jax.tree.map(lambda p: (p - 0.5 + 0.05 * jnp.sin(t + p)).astype(p.dtype), params)


def step_fn(tx: optax.GradientTransformation, subject: Subject):
  tx = optax.with_extra_args_support(tx)

  def step(params, state, t):
    # A metric that stalls after three steps, so reduce_on_plateau cuts.
    metric = jnp.maximum(3.0 - t.astype(jnp.float32), 0.0)
    updates, state = tx.update(gradient(params, t), state, params, value=metric)
    if subject.starts_cooldown:
      state = osd.start_cooldown(state, decay_steps=3, when=t == 2)
    return optax.apply_updates(params, updates), state, updates

  return step


def train(tx, subject, params):
  """NUM_STEPS steps in a jitted scan: final params, initial and final state, all updates."""
  step = step_fn(tx, subject)
  initial = tx.init(params)

  def body(carry, t):
    params, state, updates = step(*carry, t)
    return (params, state), updates

  (params, state), updates = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(NUM_STEPS)))(
    (params, initial)
  )
  return params, initial, state, updates


def _float_leaves(tree) -> list[jax.Array]:
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]


def _sizes():
  return {int(np.prod(shape)) for shape in SHAPES.values()}


def _subjaxprs(eqn) -> list[Any]:
  """The jaxprs nested in an equation's parameters (of pjit, cond, scan, custom_jvp...)."""
  found = []
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else [value]:
      inner = getattr(item, 'jaxpr', item)  # a ClosedJaxpr holds its Jaxpr
      if hasattr(inner, 'eqns'):
        found.append(inner)
  return found


def param_sized_float_vars(jaxpr) -> list[Any]:
  """(variable, equation) of every float value of a parameter's size in ``jaxpr``, nested in."""
  found = []
  sizes = _sizes()
  for eqn in jaxpr.eqns:
    for var in eqn.outvars:
      aval = var.aval
      if (
        hasattr(aval, 'dtype')
        and jnp.issubdtype(aval.dtype, jnp.floating)
        and int(np.prod(aval.shape)) in sizes
      ):
        found.append((var, eqn))
    for sub in _subjaxprs(eqn):
      found += param_sized_float_vars(sub)
  return found


def _all_vars(jaxpr) -> set[int]:
  found = {id(v) for eqn in jaxpr.eqns for v in eqn.outvars}
  for eqn in jaxpr.eqns:
    for sub in _subjaxprs(eqn):
      found |= _all_vars(sub) | {id(v) for v in sub.invars}
  return found


def _needed(jaxpr, outvars) -> set[int]:
  """The ids of the variables of ``jaxpr`` (nested ones included) that ``outvars`` depend on.

  Follows each output into the jaxprs of ``jit`` calls and ``cond`` branches; any other
  nested jaxpr on the way counts as needed whole.
  """
  needed = {id(v) for v in outvars}

  def into(inner, wanted, operands):
    inner_needed = _needed(inner, [inner.outvars[i] for i in wanted])
    needed.update(inner_needed)
    needed.update(
      id(o) for o, v in zip(operands, inner.invars, strict=True) if id(v) in inner_needed
    )

  for eqn in reversed(jaxpr.eqns):
    wanted = [i for i, v in enumerate(eqn.outvars) if id(v) in needed]
    if not wanted:
      continue
    if eqn.primitive.name in ('pjit', 'jit', 'closed_call') and 'jaxpr' in eqn.params:
      into(eqn.params['jaxpr'].jaxpr, wanted, eqn.invars)
    elif eqn.primitive.name == 'cond':
      needed.add(id(eqn.invars[0]))  # the branch index
      for branch in eqn.params['branches']:
        into(branch.jaxpr, wanted, eqn.invars[1:])
    else:
      needed.update(id(v) for v in eqn.invars)
      for sub in _subjaxprs(eqn):
        needed |= _all_vars(sub)
  return needed


def assert_no_wider_values(tx, subject, params, accumulates):
  """Parameter-sized values: those the updates depend on no wider than the parameters, all
  others (statistics, averages) no wider than the parameters promoted to float32.

  ``accumulates``: the wrapper accumulates gradients in float32 (optax.MultiSteps does), so
  the updates may depend on float32 values.
  """
  dtype = jax.tree.leaves(params)[0].dtype
  statistics = jnp.promote_types(dtype, jnp.float32)
  if accumulates:
    dtype = statistics
  state = tx.init(params)
  closed = jax.make_jaxpr(step_fn(tx, subject))(params, state, jnp.int32(3))
  jaxpr = closed.jaxpr
  num_params = len(jax.tree.leaves(params))
  num_state = len(jax.tree.leaves(state))
  update_vars = jaxpr.outvars[num_params + num_state :]
  on_update_path = _needed(jaxpr, update_vars)
  for var, eqn in param_sized_float_vars(jaxpr):
    limit = dtype if id(var) in on_update_path else statistics
    if jnp.promote_types(var.aval.dtype, limit) != limit:
      raise AssertionError(
        f'{eqn.primitive} makes a parameter-sized {var.aval.dtype} value '
        f'(parameters {dtype}, limit {limit}): {eqn}'
      )


OUR_STATES = (
  osd.AutoStepDecayState,
  osd.AverageState,
  osd.CooldownState,
  osd.ReduceOnPlateauState,
  osd.SampledIterateState,
  osd.TrackedLearningRateState,
)


def assert_statistics_at_least_float32(state):
  """Our states' float fields: scalars, and averages, at least float32."""
  ours = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, OUR_STATES))
  for node in ours:
    if not isinstance(node, OUR_STATES):
      continue
    kept = node._replace(iterate=()) if isinstance(node, osd.SampledIterateState) else node
    if 'params_like' in node._fields:  # dtype markers of size 0
      kept = kept._replace(params_like=())
    if isinstance(node, osd.AutoStepDecayState):  # a copy of the parameters, not a statistic
      kept = kept._replace(reference=())
    for leaf in _float_leaves(kept):
      assert jnp.promote_types(leaf.dtype, jnp.float32) == leaf.dtype, (type(node), leaf.dtype)


def tolerance_of(dtype):
  return TOLERANCE[np.dtype(dtype).type]


def _reference(subject_name, wrapper_name):
  subject = SUBJECTS[subject_name]
  tx = WRAPPERS[wrapper_name](subject)
  return train(tx, subject, initial_params(jnp.float32))


_REFERENCES: dict[tuple[str, str], Any] = {}


def reference(subject_name, wrapper_name):
  key = (subject_name, wrapper_name)
  if key not in _REFERENCES:
    _REFERENCES[key] = _reference(subject_name, wrapper_name)
  return _REFERENCES[key]


def check_case(subject_name: str, wrapper_name: str, dtype_name: str) -> None:
  """Trains one case of the matrix and checks every property the module docstring lists."""
  subject = SUBJECTS[subject_name]
  dtype, x64 = DTYPES[dtype_name]
  ref_params, _, ref_state, _ = reference(subject_name, wrapper_name)
  with x64_enabled() if x64 else contextlib.nullcontext():
    tx = WRAPPERS[wrapper_name](subject)
    params = initial_params(dtype)
    final, initial, state, updates = train(tx, subject, params)

    chex.assert_trees_all_equal_structs(initial, state)
    chex.assert_trees_all_equal_shapes_and_dtypes(initial, state)
    chex.assert_trees_all_equal_dtypes(jax.tree.map(lambda u: u[0], updates), params)
    assert_statistics_at_least_float32(state)
    assert_no_wider_values(tx, subject, params, accumulates=wrapper_name == 'MultiSteps')

    tolerance = tolerance_of(dtype)
    chex.assert_trees_all_close(
      optax.tree.cast(final, jnp.float32), ref_params, rtol=tolerance, atol=tolerance
    )
    check_readers(subject, wrapper_name, state, ref_state, final, tolerance)


def cases(dtype_names: list[str]) -> list[Any]:
  """The matrix's cases in the given parameter dtypes, as pytest parameters."""
  return [
    pytest.param(s, w, d, id=f'{s}-{w}-{d}')
    for s in SUBJECTS
    for w in WRAPPERS
    for d in dtype_names
  ]


def check_readers(subject, wrapper_name, state, ref_state, params, tolerance):
  grouped = wrapper_name in ('multi_transform', 'masked')
  if subject.has_rate:
    if wrapper_name == 'masked':
      with pytest.raises(ValueError, match='masked'):
        osd.current_learning_rate(state)
    else:
      rates = osd.current_learning_rate(state)
      expected = osd.current_learning_rate(ref_state)
      if grouped:
        assert set(rates) == {'a', 'b'}, rates
      chex.assert_trees_all_close(
        optax.tree.cast(rates, jnp.float32), expected, rtol=tolerance, atol=1e-7
      )
  if subject.has_output:
    if wrapper_name == 'masked':
      with pytest.raises(ValueError, match='masked'):
        osd.output_params(state)
    else:
      out = osd.output_params(state)
      chex.assert_trees_all_equal_shapes_and_dtypes(out, params)
      chex.assert_trees_all_close(
        optax.tree.cast(out, jnp.float32),
        osd.output_params(ref_state),
        rtol=tolerance,
        atol=tolerance,
      )

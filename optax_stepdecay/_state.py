"""Finding this package's states inside any optimizer state, reading them and replacing them.

The one module that searches optimizer states. Every reader and writer of a
state (:func:`~optax_stepdecay.current_learning_rate`,
:func:`~optax_stepdecay.output_params`, :func:`~optax_stepdecay.start_cooldown`)
goes through it, and it goes through optax's state utilities
(``optax.tree.get_all_with_path`` and ``optax.tree.set``, both in optax 0.2.5),
so every nesting optax knows is covered: ``optax.chain``,
``optax.inject_hyperparams``, ``optax.MultiSteps``, ``optax.multi_transform``, and
the ``opt_state`` of a Flax ``nnx.Optimizer``, whose arrays are Flax variables.
The searches run in Python on the structure of the state (at trace time
under jit); they never touch the arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

KeyPath = tuple[Any, ...]


def is_variable(value: Any) -> bool:
  """Whether ``value`` is a Flax variable (``nnx.Optimizer`` state), without importing Flax."""
  return hasattr(value, 'get_metadata') and hasattr(value, 'replace')


def read(value: Any) -> jax.Array:
  """An array of the state, unwrapping a Flax variable (``v[...]``, Flax 0.11 and later)."""
  return jnp.asarray(value[...] if is_variable(value) else value)


def write(old: Any, value: jax.Array) -> Any:
  """``value`` in place of ``old``: in a new Flax variable like ``old`` if that is one."""
  return old.replace(value) if is_variable(old) else value


def _owner(path: KeyPath) -> str | None:
  """The class name of the named tuple whose field ``path`` ends at, if it does."""
  return getattr(path[-1], 'tuple_name', None) if path else None


def _is_hyperparameter(path: KeyPath) -> bool:
  """Whether ``path`` ends at an entry of an ``optax.inject_hyperparams`` state's hyperparams."""
  return len(path) >= 2 and getattr(path[-2], 'name', None) == 'hyperparams'


def find(opt_state: Any, kinds: Sequence[type]) -> list[Any]:
  """Every state of the named-tuple classes ``kinds`` in ``opt_state``.

  Class by class in the order of ``kinds``, each in tree order. A state of
  another class with the same name is not one of them.
  """
  found = []
  for kind in kinds:

    def of_kind(path: KeyPath, node: Any, kind: type = kind) -> bool:
      del path
      return isinstance(node, kind)

    found += [node for _, node in optax.tree.get_all_with_path(opt_state, kind.__name__, of_kind)]
  return found


def fields_and_hyperparameters(
  opt_state: Any, name: str, kinds: Sequence[type]
) -> tuple[list[Any], list[Any]]:
  """The values of field ``name`` of the states of ``kinds``, and of the hyperparameter ``name``.

  One search of ``opt_state`` for the key ``name``; a field counts when the
  named tuple holding it has the name of one of ``kinds``, a hyperparameter
  when it is in the ``hyperparams`` of an ``optax.inject_hyperparams`` state.
  Both lists are in tree order (optax lists a match found inside another
  match after the outer ones). The values are as the state holds them:
  arrays, or Flax variables (see :func:`read`).
  """
  owners = {kind.__name__ for kind in kinds}
  fields, hyperparameters = [], []
  for path, value in optax.tree.get_all_with_path(opt_state, name):
    if _owner(path) in owners:
      fields.append(value)
    elif _is_hyperparameter(path):
      hyperparameters.append(value)
  return fields, hyperparameters


def replace_each(opt_state: Any, kind: type, new: Callable[[Any], Any]) -> tuple[Any, int]:
  """``opt_state`` with every state ``s`` of class ``kind`` replaced by ``new(s)``.

  Returns:
    The new optimizer state (same structure) and how many states were replaced.
  """
  found = optax.tree.get_all_with_path(
    opt_state, kind.__name__, filtering=lambda _, node: isinstance(node, kind)
  )
  for place, node in found:

    def here(path: KeyPath, value: Any, place: KeyPath = place) -> bool:
      return path == place and isinstance(value, kind)

    opt_state = optax.tree.set(opt_state, here, **{kind.__name__: new(node)})
  return opt_state, len(found)

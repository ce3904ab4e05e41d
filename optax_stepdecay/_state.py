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
from typing import NamedTuple

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


def read_tree(tree: Any) -> Any:
  """``tree`` with every Flax variable read as its array (see :func:`read`)."""
  return jax.tree.map(read, tree, is_leaf=is_variable)


def write(old: Any, value: jax.Array) -> Any:
  """``value`` in place of ``old``: in a new Flax variable like ``old`` if that is one."""
  return old.replace(value) if is_variable(old) else value


def _owner(path: KeyPath) -> str | None:
  """The class name of the named tuple whose field ``path`` ends at, if it does."""
  return getattr(path[-1], 'tuple_name', None) if path else None


def _is_hyperparameter(path: KeyPath) -> bool:
  """Whether ``path`` ends at an entry of an ``optax.inject_hyperparams`` state's hyperparams."""
  return len(path) >= 2 and getattr(path[-2], 'name', None) == 'hyperparams'


def _is_masked_inner(key: Any) -> bool:
  return getattr(key, 'tuple_name', None) == 'MaskedState' and key.name == 'inner_state'


class Found(NamedTuple):
  """A state (or field) found in an optimizer state, and which parameters it applies to.

  Attributes:
    value: the state, or the field's value.
    group: the labels of the ``optax.multi_transform`` groups it is in,
      outermost first; empty when it applies to every parameter.
    masked: whether it is inside an ``optax.masked`` (other than the one
      ``optax.multi_transform`` wraps each group in), so applies to the
      parameters the mask selects only.
    path: where it is, for messages.
  """

  value: Any
  group: tuple[str, ...]
  masked: bool
  path: KeyPath


def _found(path: KeyPath, value: Any) -> Found:
  """Reads the groups and masks on ``path``.

  ``optax.multi_transform`` keeps group ``label``'s state at
  ``inner_states[label]``, wrapped in the ``MaskedState`` of the group's mask;
  any other ``MaskedState`` on the way is a user's ``optax.masked``.
  """
  group: list[str] = []
  masked = False
  i = 0
  while i < len(path):
    key = path[i]
    if getattr(key, 'name', None) == 'inner_states' and i + 1 < len(path):
      group.append(str(getattr(path[i + 1], 'key', path[i + 1])))
      i += 2
      if i < len(path) and _is_masked_inner(path[i]):
        i += 1  # the group's own mask
      continue
    masked |= _is_masked_inner(key)
    i += 1
  return Found(value, tuple(group), masked, path)


def where(found: Found) -> str:
  """``found``'s place, as a message names it."""
  return jax.tree_util.keystr(found.path)


def find(opt_state: Any, kinds: Sequence[type]) -> list[Any]:
  """Every state of the named-tuple classes ``kinds`` in ``opt_state`` (see :func:`locate`)."""
  return [found.value for found in locate(opt_state, kinds)]


def locate(opt_state: Any, kinds: Sequence[type]) -> list[Found]:
  """Every state of the named-tuple classes ``kinds`` in ``opt_state``, with its group.

  Class by class in the order of ``kinds``, each in tree order. A state of
  another class with the same name is not one of them.
  """
  found = []
  for kind in kinds:

    def of_kind(path: KeyPath, node: Any, kind: type = kind) -> bool:
      del path
      return isinstance(node, kind)

    found += [
      _found(path, node)
      for path, node in optax.tree.get_all_with_path(opt_state, kind.__name__, of_kind)
    ]
  return found


def fields_and_hyperparameters(
  opt_state: Any, name: str, kinds: Sequence[type]
) -> tuple[list[Found], list[Found]]:
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
      fields.append(_found(path, value))
    elif _is_hyperparameter(path):
      hyperparameters.append(_found(path, value))
  return fields, hyperparameters


def check_unmasked(found: Sequence[Found], what: str) -> None:
  """Refuses a state inside a user's ``optax.masked``: it speaks for some parameters only."""
  for item in found:
    if item.masked:
      raise ValueError(
        f'opt_state holds {what} inside an optax.masked state (at {where(item)}), which '
        "applies only to the parameters the mask selects: pass that masked state's "
        f'inner_state to read {what} of those parameters.'
      )


def by_group(found: Sequence[Found]) -> dict[tuple[str, ...], list[Found]]:
  """``found`` keyed by group, each group's list in the order of ``found``."""
  groups: dict[tuple[str, ...], list[Found]] = {}
  for item in found:
    groups.setdefault(item.group, []).append(item)
  return groups


def label(group: tuple[str, ...]) -> str:
  """A group's key in the readers' dictionaries: its labels joined by '/'."""
  return '/'.join(group)


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


def _is_masked_node(value: Any) -> bool:
  return isinstance(value, optax.MaskedNode)


def merge_groups(trees: Sequence[Any], missing_what: str) -> Any:
  """One tree of parameters from the groups' trees, each holding optax.MaskedNode for the others.

  Raises:
    ValueError: some parameters are in none of the groups' trees; the message says they are
      in a group without ``missing_what``.
  """

  def first_present(*leaves: Any) -> Any:
    return next((leaf for leaf in leaves if not _is_masked_node(leaf)), optax.MaskedNode())

  merged = jax.tree.map(first_present, *trees, is_leaf=_is_masked_node)
  leaves = jax.tree_util.tree_flatten_with_path(merged, is_leaf=_is_masked_node)[0]
  missing = [jax.tree_util.keystr(path) for path, leaf in leaves if _is_masked_node(leaf)]
  if missing:
    raise ValueError(
      f'The parameters at {", ".join(missing)} are in an optax.multi_transform group without '
      f'{missing_what}.'
    )
  return merged

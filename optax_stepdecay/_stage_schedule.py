"""The schedule object every factory returns: callable, inspectable, serialisable."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from optax_stepdecay import _validation as check
from optax_stepdecay._counts import as_count
from optax_stepdecay._counts import is_traced
from optax_stepdecay._counts import max_count
from optax_stepdecay._counts import nan_mask


class Stage(NamedTuple):
  """One row of a schedule's stage table.

  Attributes:
    start: first step of the stage.
    end: first step after the stage (exclusive), or None when the stage runs
      forever.
    value: the value at ``start``; constant over the stage unless ``ramp_to``
      is set.
    ramp_to: for a ramp (a warmup or decay, linear unless the stage table
      names another shape), the value the ramp reaches at ``end``; None for
      a constant stage.
  """

  start: int
  end: int | None
  value: float
  ramp_to: float | None = None


_FACTORIES: dict[str, Callable[..., StageSchedule]] = {}

MAX_TABLE_ROWS = 1_000_000
"""The most change points, and stage table rows, a schedule lists."""


def register(factory: Callable[..., StageSchedule]) -> Callable[..., StageSchedule]:
  """Makes ``factory`` rebuildable by :func:`schedule_from_dict`."""
  _FACTORIES[factory.__name__] = factory
  return factory


def _jsonable(name: str, value: Any) -> Any:
  if isinstance(value, StageSchedule):
    return value.to_dict()
  if is_traced(value):
    raise ValueError(f'{name} is traced and cannot be serialised.')
  if isinstance(value, (jax.Array, np.ndarray, np.generic)):
    return np.asarray(value).tolist()
  if isinstance(value, (list, tuple)):
    return [_jsonable(f'{name}[{i}]', v) for i, v in enumerate(value)]
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  raise ValueError(f'{name}={value!r} cannot be serialised.')


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class StageSchedule:
  """A schedule built by this package.

  Use it wherever optax takes a schedule: it maps a step count (any integer
  or float dtype, any shape) to the value of that step, with only ``jnp``
  operations on the count. It also knows its stages: :meth:`stages` lists
  them, :meth:`plot` draws them, and :meth:`to_dict` records the factory and
  arguments that rebuild it with :func:`schedule_from_dict`.

  Counts below zero evaluate as count 0. Float counts are floored (a count
  of 2.7 is step 2); a NaN count gives a NaN value.

  Counts are evaluated as ``uint32`` (``int64`` with ``jax_enable_x64``), so
  the largest count is 2^32 - 1 (2^63 - 1); factories
  refuse a stage boundary or horizon beyond it, checked against the setting
  in force when the schedule is built. optax's own counters are int32 and
  stop at 2^31 - 1: boundaries above that are reached only by
  larger counts, such as Flax's uint32 ``nnx.Optimizer.step``
  (:func:`scale_by_tracked_learning_rate` refuses such schedules).

  Factories build it, a frozen value, from these functions; one schedule can
  wrap another (:func:`with_linear_warmup`).

  Attributes:
    name: the factory, which :func:`schedule_from_dict` calls.
    config: the factory's arguments.
    value_fn: the value of a count as given (NaN counts aside).
    index_fn: the stage index of a count of :func:`count_dtype`.
    points_fn: the stage starts in ``(0, limit)``, a list or range.
    num_stages: number of stages, or None when there are infinitely many.
    table_fn: the stage table for ``num_steps``, when it has ramps.
    ramp_shape_fn: the shape of a ramp in the table; ``'linear'`` when None.
  """

  name: str
  config: dict[str, Any]
  value_fn: Callable[[jax.typing.ArrayLike], jax.Array]
  index_fn: Callable[[jax.Array], jax.Array]
  points_fn: Callable[[int], Sequence[int]]
  num_stages: int | None
  table_fn: Callable[[int | None], list[Stage]] | None = None
  ramp_shape_fn: Callable[[Stage], str] | None = None

  def __call__(self, count: jax.typing.ArrayLike) -> jax.Array:
    return _nan_where_nan_count(count, self.value_fn(count))

  def stage_index(self, count: jax.typing.ArrayLike) -> jax.Array:
    """The (0-based, exact integer) index of the stage that ``count`` is in."""
    return self.index_fn(as_count(count))

  def change_points(self, num_steps: int | None = None) -> list[int]:
    """The steps in ``(0, num_steps)`` at which a new stage begins.

    Args:
      num_steps: horizon of interest; None asks for all of them, which needs
        a schedule with finitely many stages.

    Returns:
      The start steps of stages 1, 2, ... in increasing order.

    Raises:
      ValueError: there are more than 1,000,000 of them (pass a smaller
        ``num_steps``); the list is never cut short.
    """
    if num_steps is None and self.num_stages is None:
      raise ValueError(f'{self!r} has infinitely many stages: pass num_steps to bound them.')
    limit = max_count() + 1 if num_steps is None else min(num_steps, max_count() + 1)
    points = self.points_fn(limit)
    if len(points) > MAX_TABLE_ROWS:
      raise ValueError(
        f'{self!r} puts {len(points)} stage boundaries before step {limit}: change points '
        f'and stage tables are limited to {MAX_TABLE_ROWS} rows; pass a smaller num_steps.'
      )
    return list(points)

  def stages(self, num_steps: int | None = None) -> list[Stage]:
    """The stage table: one :class:`Stage` per run of equal values.

    Args:
      num_steps: the table covers steps ``[0, num_steps)``; None covers all
        steps of a schedule with finitely many stages (the last stage then has
        ``end=None``).

    Returns:
      The stages in order; adjacent stages have different values.
    """
    if self.table_fn is not None:
      return self.table_fn(num_steps)
    starts = [0, *self.change_points(num_steps)]
    if len(starts) > MAX_TABLE_ROWS:
      raise ValueError(
        f'{self!r} has {len(starts)} stages before step {num_steps}; '
        f'tables are limited to {MAX_TABLE_ROWS} rows.'
      )
    values = np.asarray(self(np.asarray(starts, dtype=np.int64))).tolist()
    rows: list[Stage] = []
    for start, value in zip(starts, values, strict=True):
      if rows and rows[-1].value == value:
        continue
      if rows:
        rows[-1] = rows[-1]._replace(end=start)
      rows.append(Stage(start, num_steps, value))
    return rows

  def stage_table(self, num_steps: int | None = None) -> str:
    """The stage table as aligned text, one line per stage."""
    lines = [f'{"stage":>5}  {"start":>12}  {"end":>12}  value']
    for i, row in enumerate(self.stages(num_steps)):
      end = '-' if row.end is None else str(row.end)
      value = f'{row.value:.6g}'
      if row.ramp_to is not None:
        value += f' -> {row.ramp_to:.6g} ({self._ramp_shape(row)})'
      lines.append(f'{i:>5}  {row.start:>12}  {end:>12}  {value}')
    return '\n'.join(lines)

  def to_dict(self) -> dict[str, Any]:
    """The factory name and arguments; :func:`schedule_from_dict` rebuilds it."""
    args = {k: _jsonable(k, v) for k, v in self.config.items()}
    return {'name': self.name, 'args': args}

  def to_json(self) -> str:
    """:meth:`to_dict` as a JSON string."""
    return json.dumps(self.to_dict(), sort_keys=True)

  def plot(self, num_steps: int, *, ax: Any = None, log_scale: bool = True, **kwargs: Any) -> Any:
    """Draws the schedule over ``[0, num_steps)`` with matplotlib.

    Args:
      num_steps: horizon to draw.
      ax: a matplotlib ``Axes``; a new figure's when None.
      log_scale: use a logarithmic value axis (when every value is positive).
      **kwargs: passed to ``ax.plot`` (``label``, ``color``, ...).

    Returns:
      The ``Axes`` drawn on.
    """
    try:
      import matplotlib.pyplot as plt
    except ImportError as error:
      raise ImportError('plotting needs matplotlib: pip install matplotlib') from error
    if ax is None:
      _, ax = plt.subplots()
    steps, values = [], []
    for row in self.stages(num_steps):
      steps += [row.start, row.end]
      values += [row.value, row.value if row.ramp_to is None else row.ramp_to]
      if row.ramp_to is not None and self._ramp_shape(row) != 'linear':  # a curve: 64 points
        inner = np.linspace(row.start, cast(int, row.end), 65, dtype=np.int64)[1:-1]
        steps[-1:-1], values[-1:-1] = inner.tolist(), np.asarray(self(inner)).tolist()
    ax.plot(steps, values, **kwargs)
    if log_scale and min(values) > 0:
      ax.set_yscale('log')
    ax.set_xlabel('step')
    ax.set_ylabel('learning rate')
    return ax

  def _ramp_shape(self, row: Stage) -> str:
    """The shape of a ramp of :meth:`stages` (``'linear'``; :func:`wsd_schedule` has others)."""
    return 'linear' if self.ramp_shape_fn is None else self.ramp_shape_fn(row)

  def __repr__(self) -> str:
    args = ', '.join(f'{k}={v!r}' for k, v in self.config.items())
    return f'{self.name}({args})'


def check_learning_rate(learning_rate: Any) -> None:
  """Checks a transformation's step size: a positive scalar, or a schedule whose every stage
  boundary optax's int32 update count reaches."""
  if not callable(learning_rate):
    check.check_scalar('learning_rate', learning_rate)
    check.check_positive('learning_rate', learning_rate)
  elif isinstance(learning_rate, StageSchedule) and not reaches_every_stage(
    learning_rate, check.INT32_MAX
  ):
    raise ValueError(
      f'learning_rate={learning_rate!r} has stage boundaries beyond count '
      f'{check.INT32_MAX}, which this transformation never reaches: it counts updates '
      f'as optax does, and {check.INT32_COUNT}.'
    )


def reaches_every_stage(schedule: StageSchedule, count: int) -> bool:
  """Whether counts up to ``count`` reach all of ``schedule``'s stage boundaries.

  With finitely many stages: the last stage has begun by ``count``; with
  infinitely many: the first cut has. True when the stage index is traced
  (a traced stage length) and cannot be inspected.
  """
  if count < 0:
    return False
  try:
    index = schedule.stage_index(np.asarray(count, dtype=np.int64))
  except ValueError:  # a warmup in front of a foreign schedule: no stages to check
    return True
  if is_traced(index) or is_traced(schedule.num_stages):
    return True
  last = 1 if schedule.num_stages is None else schedule.num_stages - 1
  return bool(np.all(np.asarray(index) >= last))


def _nan_where_nan_count(count: jax.typing.ArrayLike, value: jax.Array) -> jax.Array:
  mask = nan_mask(count)
  if mask is None:
    return value
  return jnp.where(mask, jnp.nan, value)


def schedule_from_dict(config: dict[str, Any]) -> StageSchedule:
  """Rebuilds a schedule from :meth:`StageSchedule.to_dict`'s output.

  Args:
    config: ``{'name': factory name, 'args': {argument: value}}``; nested
      schedule arguments are dictionaries of the same form.

  Returns:
    The schedule the factory builds from those arguments.

  Example:
    >>> import optax_stepdecay as osd
    >>> schedule = osd.step_decay_schedule(0.1, decay_factor=10.0, stage_length=100)
    >>> rebuilt = osd.schedule_from_dict(schedule.to_dict())
    >>> rebuilt.to_dict() == schedule.to_dict(), float(rebuilt(250))
    (True, 0.0010000000474974513)
  """
  if not isinstance(config, dict) or set(config) != {'name', 'args'}:
    raise ValueError(f"config must be a dict with keys 'name' and 'args', got {config!r}.")
  name = config['name']
  if name not in _FACTORIES:
    raise ValueError(f'config names an unknown schedule {name!r}; known: {sorted(_FACTORIES)}.')
  args = {
    key: schedule_from_dict(value) if isinstance(value, dict) else value
    for key, value in config['args'].items()
  }
  return _FACTORIES[name](**args)


def schedule_from_json(text: str) -> StageSchedule:
  """Rebuilds a schedule from :meth:`StageSchedule.to_json`'s output."""
  return schedule_from_dict(json.loads(text))

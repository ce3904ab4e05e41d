"""The one source of settings: every field of a run, its default, help text and check.

``main.py`` turns these fields into command-line flags; ``train.py`` and
``compare.py`` read them. A run is defined by the fields of :class:`Config`
(and only those are compared when a checkpoint is resumed).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

TUNED_DIR = Path(__file__).resolve().parent / 'tuned'


def _field(default: Any, help: str, **metadata: Any) -> Any:
  return dataclasses.field(default=default, metadata={'help': help, **metadata})


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines one training run (and every run of a comparison)."""

  dataset: str = _field('mnist1d', 'dataset name')
  model: str | None = _field(None, "model name (default: the dataset's own model)")
  schedule: str = _field('step_decay', 'step size by name (see the list below)')
  lr: float | None = _field(
    None, 'eta0, the initial step size (default: the tuned value in examples/tuned/)', positive=True
  )
  knob: float | None = _field(
    None, "the schedule's one decay knob (default: tuned; see the list below)", positive=True
  )
  momentum: float = _field(0.9, 'heavy-ball momentum, in [0, 1)', unit_interval=True)
  weight_decay: float = _field(5e-4, 'coupled L2 weight decay, >= 0', non_negative=True)
  epochs: int = _field(
    60, 'training epochs (the budget is epochs x updates per epoch)', positive=True
  )
  batch_size: int = _field(128, 'global batch size', positive=True)
  seed: int = _field(0, 'seed of the initialisation and of the batch order', non_negative=True)
  augment: bool | None = _field(None, 'random crops and flips (default: on for CIFAR only)')


RUN_FIELDS = tuple(f.name for f in dataclasses.fields(Config))


def check_value(flag: str, value: float, field: dataclasses.Field) -> str | None:
  """Why ``value`` is impossible for this field, or None."""
  meta = field.metadata
  if isinstance(value, float) and not math.isfinite(value):
    return f'{flag} must be a finite number, got {value!r}'
  if meta.get('positive') and not value > 0:
    return f'{flag} must be > 0, got {value!r}'
  if meta.get('non_negative') and not value >= 0:
    return f'{flag} must be >= 0, got {value!r}'
  if meta.get('unit_interval') and not 0 <= value < 1:
    return f'{flag} must be in [0, 1), got {value!r}'
  return None


def load_tuned(dataset: str, path: Path | None = None) -> dict[str, Any] | None:
  """The tuned settings of a dataset (``examples/tuned/DATASET.json``), or None."""
  path = path or TUNED_DIR / f'{dataset}.json'
  return json.loads(path.read_text()) if path.exists() else None


def differing_fields(saved: dict[str, Any], config: Any) -> list[str]:
  """The run-defining fields (those of ``config``'s dataclass) in which a saved config differs."""
  current = dataclasses.asdict(config)
  return [f'{k} ({saved.get(k)!r} -> {v!r})' for k, v in current.items() if saved.get(k) != v]

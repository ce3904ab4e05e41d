"""The settings of one language-model run: every field, its default, help text and check.

``main.py`` turns the fields into flags with the MNIST-1D examples' helpers, and a
checkpoint directory refuses to resume a run whose fields differ.
"""

from __future__ import annotations

import dataclasses

from examples.configs import _field

CHUNKS = 20  # a run is trained in 20 equal chunks (one compiled program each): steps % 20 == 0
EVALUATIONS = 4  # evaluated after every fifth chunk


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything that defines one language-model run (and every run of a comparison)."""

  schedule: str = _field('wsd', 'step size by name (see the list below)')
  lr: float | None = _field(
    None,
    'eta0, the peak step size (default: the tuned value in examples/tuned/lm.json)',
    positive=True,
  )
  knob: float | None = _field(
    None, "the schedule's one knob (default: tuned; see the list below)", positive=True
  )
  steps: int = _field(800, f'updates of a run, a multiple of {CHUNKS}', positive=True)
  batch_size: int = _field(16, 'sequences per update', positive=True)
  context: int = _field(64, 'bytes per sequence', positive=True)
  width: int = _field(64, 'model width', positive=True)
  layers: int = _field(2, 'transformer blocks', positive=True)
  heads: int = _field(4, 'attention heads (they divide the width)', positive=True)
  dtype: str = _field('bfloat16', 'dtype of the parameters and the activations')
  weight_decay: float = _field(
    0.1, "AdamW's decoupled weight decay (not on biases, norms, embeddings)", non_negative=True
  )
  clip_norm: float = _field(1.0, 'gradients are clipped to this global norm', positive=True)
  seed: int = _field(0, 'seed of the initialisation and of the batch order', non_negative=True)


def check(config: Config) -> str | None:
  """Why settings that each pass their own check cannot work together, or None."""
  if config.steps % CHUNKS:
    return f'--steps must be a multiple of {CHUNKS}, got {config.steps}'
  if config.width % config.heads:
    return f'--heads {config.heads} must divide --width {config.width}'
  return None

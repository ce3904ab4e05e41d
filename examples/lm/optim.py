"""AdamW as language models are trained with it, and the step sizes the example compares.

Every run uses the same optimizer: gradients clipped to a global norm, Adam's
scaling, decoupled weight decay on the weight matrices only (``optax.masked``,
through ``add_decayed_weights``: biases, norms and embeddings are not decayed)
and a step size read back with ``osd.current_learning_rate``. Only the step size
differs. Every schedule warms up linearly from 0 over the first 5% of the
updates; eta0 is its peak.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import optax_stepdecay as osd
from examples.lm import configs

B1, B2, EPS = 0.9, 0.95, 1e-8
DECAYED = ('kernel',)  # the weight matrices of nnx.Linear and nnx.MultiHeadAttention
COOLDOWN = 'cooldown'  # the branch demo's warmup-stable run, cooled down by osd.start_cooldown


def _name(path) -> str:
  names = [getattr(k, 'name', getattr(k, 'key', None)) for k in path]
  names = [n for n in names if n != 'value']  # an nnx.Variable's own field
  return str(names[-1])


def decay_mask(params) -> Any:
  """True for the leaves weight decay applies to: the kernels, not biases, norms or embeddings."""
  return jax.tree_util.tree_map_with_path(lambda path, _: _name(path) in DECAYED, params)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How to build a run's optimizer from its eta0, which may be traced (many runs at once).

  Frozen and hashable: compiled programs are cached on it.
  """

  schedule: str
  knob: float | None
  total_steps: int
  warmup_steps: int
  weight_decay: float
  clip_norm: float

  @classmethod
  def of(cls, config: configs.Config, total_steps: int | None = None) -> Recipe:
    """The recipe of a resolved config; ``total_steps`` sets another length, same warmup."""
    steps = total_steps or config.steps
    warmup = warmup_steps(config.steps)
    return cls(config.schedule, config.knob, steps, warmup, config.weight_decay, config.clip_norm)

  def step_size(self, eta0) -> optax.GradientTransformation:
    if self.schedule == COOLDOWN:  # held at the peak until start_cooldown says otherwise
      return osd.scale_by_cooldown(osd.wsd_schedule(eta0, warmup_steps=self.warmup_steps))
    schedule = SCHEDULES[self.schedule].schedule(eta0, self)
    return osd.scale_by_tracked_learning_rate(schedule)

  def __call__(self, eta0) -> optax.GradientTransformationExtraArgs:
    """AdamW with this step size; every update takes ``value=loss`` (and ignores it)."""
    return optax.with_extra_args_support(
      optax.chain(
        optax.clip_by_global_norm(self.clip_norm),
        optax.scale_by_adam(B1, B2, EPS),
        optax.add_decayed_weights(self.weight_decay, mask=decay_mask),
        self.step_size(eta0),
      )
    )


def warmup_steps(total_steps: int) -> int:
  return max(1, total_steps // 20)


def _warmed(schedule: Callable[[Any, Recipe, int], optax.Schedule]):
  """A schedule of the updates after the warmup, with the warmup prepended."""

  def build(eta0, recipe: Recipe) -> optax.Schedule:
    after = recipe.total_steps - recipe.warmup_steps
    return osd.with_linear_warmup(schedule(eta0, recipe, after), warmup_steps=recipe.warmup_steps)

  return build


def _constant(eta0, recipe: Recipe, after: int) -> optax.Schedule:
  del recipe, after
  return lambda t: eta0 * jnp.ones_like(t, dtype=jnp.float32)


def _step_decay(eta0, recipe: Recipe, after: int) -> optax.Schedule:
  # The paper's horizon rule over the updates after the warmup: floor(log_alpha T) stages.
  return osd.fixed_horizon_step_decay_schedule(eta0, total_steps=after, decay_factor=recipe.knob)


def _multistep(eta0, recipe: Recipe, after: int) -> optax.Schedule:
  del after
  cuts = [recipe.total_steps // 2, (3 * recipe.total_steps) // 4]  # of the whole run
  return osd.multistep_decay_schedule(
    eta0, milestones=[c - recipe.warmup_steps for c in cuts], decay_factor=10.0
  )


def _cosine(eta0, recipe: Recipe) -> optax.Schedule:
  # optax's schedule with peak 1, scaled: its peak may not be traced (many eta0s at once).
  unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, recipe.warmup_steps, recipe.total_steps)
  return lambda t: eta0 * unit(t)


def _wsd(eta0, recipe: Recipe) -> optax.Schedule:
  return osd.wsd_schedule(
    eta0,
    warmup_steps=recipe.warmup_steps,
    decay_steps=round(0.2 * recipe.total_steps),
    total_steps=recipe.total_steps,
  )


@dataclasses.dataclass(frozen=True)
class Spec:
  """A named step size and the grid its knob is tuned on (if it has one)."""

  describe: str
  schedule: Callable[[Any, Recipe], optax.Schedule]
  knob: str | None = None
  knob_help: str = ''
  knob_grid: tuple[float, ...] = ()


SCHEDULES: dict[str, Spec] = {
  'step_decay': Spec(
    "the paper's step decay (osd.fixed_horizon_step_decay_schedule): floor(log_alpha T) equal "
    'stages, each /alpha',
    _warmed(_step_decay),
    'alpha',
    'the divisor at each cut; it also sets the number of stages',
    (2.0, 4.0, 10.0),
  ),
  'multistep': Spec('/10 at 50% and 75% of the updates', _warmed(_multistep)),
  'constant': Spec('eta0 after the warmup', _warmed(_constant)),
  'cosine': Spec('cosine to 0 (optax.warmup_cosine_decay_schedule)', _cosine),
  'wsd': Spec('warmup-stable-decay (osd.wsd_schedule): 1-sqrt to 0 over the last 20%', _wsd),
}
REFERENCE = 'step_decay'  # paired differences are taken against it
BRANCHED, SEPARATE = 'wsd', 'cosine'  # the branch demo uses their tuned eta0s


def knob_value(name: str, knob: float | None) -> float | None:
  """The knob a run uses: the one given, else the middle of the schedule's grid (or None)."""
  grid = SCHEDULES[name].knob_grid
  if not grid:
    return None
  return grid[len(grid) // 2] if knob is None else knob

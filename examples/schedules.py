"""The step sizes the examples compare, by name, each as a complete optax optimizer.

Every optimizer is SGD with coupled L2 weight decay and optional heavy-ball
momentum (torch's ``SGD``, as the paper's experiments); only the step size
differs. Each schedule has ``eta0`` and at most one decay knob.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import optax

import optax_stepdecay as osd


@dataclasses.dataclass(frozen=True)
class Budget:
  """How long a run is, in updates."""

  total_steps: int
  steps_per_epoch: int


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """A named step size: how to build it, and the grid it is tuned on."""

  name: str
  describe: str
  build: Callable[[float, float | None, Budget], optax.Schedule]
  knob: str | None = None
  default_knob: float | None = None
  knob_grid: tuple[float, ...] = ()


def _step_decay(eta0: float, alpha: float | None, budget: Budget) -> optax.Schedule:
  # The paper's prescription, floor(log_alpha T) stages. (The authors halved it for
  # 164-epoch CIFAR runs; at the few thousand steps of these examples half would
  # often leave a single stage, i.e. a constant step.)
  return osd.fixed_horizon_step_decay_schedule(eta0, budget.total_steps, alpha or 3.0)


def _multistep(eta0: float, factor: float | None, budget: Budget) -> optax.Schedule:
  epochs = budget.total_steps // budget.steps_per_epoch
  milestones = sorted({max(1, epochs // 2), max(1, (3 * epochs) // 4)})
  return osd.multistep_decay_schedule(
    eta0, milestones, factor or 10.0, steps_per_epoch=budget.steps_per_epoch
  )


def _inv_t(eta0: float, a: float | None, budget: Budget) -> optax.Schedule:
  rate = (a or 10.0) / budget.total_steps  # knob = a * T: the step falls to eta0 / (1 + knob)
  return lambda t: eta0 / (1 + rate * t)


def _inv_sqrt_t(eta0: float, a: float | None, budget: Budget) -> optax.Schedule:
  rate = (a or 10.0) / math.sqrt(budget.total_steps)
  return lambda t: eta0 / (1 + rate * jax.numpy.sqrt(t))


def _exponential(eta0: float, b: float | None, budget: Budget) -> optax.Schedule:
  # Li, Zhuang and Orabona (2021): beta = (b / T)**(1 / T), so the last step is eta0 * b / T.
  total = budget.total_steps
  return optax.exponential_decay(eta0, 1, ((b or 10.0) / total) ** (1 / total))


def _warmup_steps(budget: Budget) -> int:
  return max(1, budget.total_steps // 20)


def _wsd(eta0: float, decay_fraction: float | None, budget: Budget) -> optax.Schedule:
  total, warmup = budget.total_steps, _warmup_steps(budget)
  decay = max(1, int(total * (decay_fraction or 0.2)))
  return optax.join_schedules(
    [
      optax.linear_schedule(0.0, eta0, warmup),
      optax.constant_schedule(eta0),
      optax.linear_schedule(eta0, 0.0, decay),
    ],
    [warmup, total - decay],
  )


def _constant(eta0: float, _: float | None, budget: Budget) -> optax.Schedule:
  del budget
  return osd.stagewise_schedule([], [eta0])


SCHEDULES: dict[str, ScheduleSpec] = {
  spec.name: spec
  for spec in [
    ScheduleSpec(
      'step_decay',
      'fixed-horizon step decay (paper)',
      _step_decay,
      'decay_factor',
      3.0,
      (2.0, 3.0, 6.0, 10.0),
    ),
    ScheduleSpec(
      'multistep',
      'x1/factor at 50% and 75% of epochs',
      _multistep,
      'decay_factor',
      10.0,
      (3.0, 10.0),
    ),
    ScheduleSpec('constant', 'constant eta0', _constant),
    ScheduleSpec(
      'inv_t', 'eta0 / (1 + a t), knob a*T', _inv_t, 'a_times_T', 10.0, (1.0, 10.0, 100.0)
    ),
    ScheduleSpec(
      'inv_sqrt_t',
      'eta0 / (1 + a sqrt t), knob a*sqrt(T)',
      _inv_sqrt_t,
      'a_times_sqrt_T',
      10.0,
      (1.0, 10.0, 100.0),
    ),
    ScheduleSpec(
      'exponential', 'eta0 (b/T)^(t/T) (Li et al.)', _exponential, 'b', 10.0, (1.0, 10.0, 100.0)
    ),
    ScheduleSpec(
      'cosine', 'cosine to 0 (optax)', lambda e, _, b: optax.cosine_decay_schedule(e, b.total_steps)
    ),
    ScheduleSpec(
      'warmup_cosine',
      '5% warmup, cosine to 0 (optax)',
      lambda e, _, b: optax.warmup_cosine_decay_schedule(0.0, e, _warmup_steps(b), b.total_steps),
    ),
    ScheduleSpec('wsd', 'warmup-stable-decay', _wsd, 'decay_fraction', 0.2, (0.1, 0.2, 0.4)),
    ScheduleSpec('schedule_free', 'schedule-free SGD (optax.contrib)', _constant),
    ScheduleSpec(
      'plateau',
      'reduce_on_plateau on the epoch train loss',
      _constant,
      'decay_factor',
      10.0,
      (3.0, 10.0),
    ),
    ScheduleSpec('auto', 'auto_step_decay (SASA+ test)', _constant, 'decay_factor', 10.0),
  ]
}


@functools.cache  # one optimizer object per configuration: runs that share it share compiles
def build_optimizer(
  name: str,
  eta0: float,
  knob: float | None,
  budget: Budget,
  *,
  momentum: float = 0.0,
  weight_decay: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
  """SGD with the named step size; ``osd.current_learning_rate`` reads its step size.

  ``plateau`` expects ``update(..., value=loss)``; every other one ignores it.
  """
  if name not in SCHEDULES:
    raise ValueError(f'unknown schedule {name!r}; choose from {sorted(SCHEDULES)}.')
  spec = SCHEDULES[name]
  knob = spec.default_knob if knob is None else knob
  parts: list[optax.GradientTransformation] = []
  if weight_decay:
    parts.append(optax.add_decayed_weights(weight_decay))
  if name == 'schedule_free':
    parts.append(
      optax.inject_hyperparams(optax.contrib.schedule_free_sgd, static_args=('warmup_steps',))(
        learning_rate=eta0, warmup_steps=_warmup_steps(budget), b1=momentum or 0.9
      )
    )
    return optax.chain(*parts)
  if momentum:
    parts.append(optax.trace(momentum))
  if name == 'auto':
    epoch = budget.steps_per_epoch  # no horizon: a test every epoch, stages of 2 or more
    parts.append(osd.auto_step_decay(eta0, knob, test_interval=epoch, min_stage_length=2 * epoch))
    return optax.chain(*parts)
  parts.append(osd.scale_by_tracked_learning_rate(spec.build(eta0, knob, budget)))
  if name == 'plateau':
    parts.append(
      osd.reduce_on_plateau(decay_factor=knob, patience=2, accumulation_size=budget.steps_per_epoch)
    )
  return optax.chain(*parts)


def schedule_free_eval_params(opt_state, params):
  """Schedule-free SGD's averaged iterate, the point it is evaluated at."""
  free = [
    s
    for s in jax.tree.leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.contrib.ScheduleFreeState)
    )
    if isinstance(s, optax.contrib.ScheduleFreeState)
  ]
  return optax.contrib.schedule_free_eval_params(free[0], params)

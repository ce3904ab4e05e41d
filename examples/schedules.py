"""The step sizes the examples compare: a registry in which every entry carries its own hooks.

Every optimizer is SGD with coupled L2 weight decay and heavy-ball momentum
(``torch.optim.SGD``, as in the paper's experiments); only the step size
differs. Each entry has ``eta0`` and at most one decay knob, and says:

* ``prepare(knob, budget)``: the knob turned into the numbers the step size
  needs, on the host (integers such as stage lengths are exact there);
* ``build(eta0, hyper, budget, sgd)``: the optimizer, from ``eta0`` and
  those numbers, which may be traced (``jax.vmap`` over them trains a whole
  grid of one schedule in one program), and the run's :class:`Sgd` settings;
* ``eval_params(opt_state, params)``: the point to evaluate (the parameters,
  or schedule-free SGD's average).

No schedule name appears outside this file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import optax

import optax_stepdecay as osd

Hyper = dict[str, Any]  # numbers from `prepare`: Python scalars, or traced under vmap


@dataclasses.dataclass(frozen=True)
class Budget:
  """How long a run is, in updates."""

  total_steps: int
  steps_per_epoch: int


@dataclasses.dataclass(frozen=True)
class Sgd:
  """What every optimizer shares: heavy-ball momentum and coupled L2, as ``torch.optim.SGD``."""

  momentum: float
  weight_decay: float

  def around(self, step_size: optax.GradientTransformation) -> optax.GradientTransformation:
    """SGD whose step size is ``step_size``: L2 added to the gradient, then momentum."""
    parts = [optax.add_decayed_weights(self.weight_decay)] if self.weight_decay else []
    parts += [optax.trace(self.momentum)] if self.momentum else []
    return optax.chain(*parts, step_size)


def _params(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
  del opt_state
  return params


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
  """A named step size: how to build, tune and evaluate it."""

  describe: str
  build: Callable[[Any, Hyper, Budget, Sgd], optax.GradientTransformation]
  family: str  # plots group schedules by family
  knob: str | None = None
  knob_help: str = ''
  knob_grid: tuple[float, ...] = ()
  prepare: Callable[[float | None, Budget], Hyper] = lambda knob, _: (
    {} if knob is None else {'knob': knob}
  )
  eval_params: Callable[[optax.OptState, optax.Params], optax.Params] = _params
  eta0_from: str | None = None  # untuned: runs with this schedule's tuned eta0
  eta0_scale: float = 1.0  # tuning tries the shared eta0 grid times this
  default_knob: float | None = None

  def __post_init__(self) -> None:
    if self.knob_grid and self.default_knob is None:
      object.__setattr__(self, 'default_knob', self.knob_grid[len(self.knob_grid) // 2])

  def optimizer(
    self, eta0: Any, hyper: Hyper, budget: Budget, *, momentum: float, weight_decay: float
  ) -> optax.GradientTransformationExtraArgs:
    """SGD with coupled L2 and this step size; read the step with osd.current_learning_rate.

    Every update takes ``value=loss`` (``plateau`` uses it, the others ignore it).
    """
    tx = self.build(eta0, hyper, budget, Sgd(momentum, weight_decay))
    return optax.with_extra_args_support(tx)


def _scheduled(schedule: Callable[[Any, Hyper, Budget], optax.Schedule]):
  """A build hook for a plain schedule: SGD scaled by ``schedule(eta0, hyper, budget)``."""

  def build(eta0, hyper: Hyper, budget: Budget, sgd: Sgd) -> optax.GradientTransformation:
    return sgd.around(osd.scale_by_tracked_learning_rate(schedule(eta0, hyper, budget)))

  return build


def _prepare_step_decay(alpha: float | None, budget: Budget) -> Hyper:
  # The paper's prescription: N = floor(log_alpha T) stages of T // N updates, the last
  # to the end (the authors' deep-net code halves N; at these budgets that leaves
  # one or two stages).
  num_stages = osd.horizon_num_stages(budget.total_steps, decay_factor=alpha)
  return {
    'alpha': alpha,
    'stage_length': budget.total_steps // num_stages,
    'num_stages': num_stages,
  }


def _step_decay(eta0, hyper: Hyper, budget: Budget, sgd: Sgd) -> optax.GradientTransformation:
  del budget
  return osd.step_decay_sgd(
    eta0,
    decay_factor=hyper['alpha'],
    stage_length=hyper['stage_length'],
    num_stages=hyper['num_stages'],
    momentum=sgd.momentum or None,
    weight_decay=sgd.weight_decay,
  )


def _multistep(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  del hyper
  return osd.multistep_decay_schedule(
    eta0, milestones=[budget.total_steps // 2, (3 * budget.total_steps) // 4], decay_factor=10.0
  )


def _inv_t(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  rate = hyper['knob'] / budget.total_steps  # the step falls to eta0 / (1 + knob) at T
  return lambda t: eta0 / (1 + rate * t)


def _inv_sqrt_t(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  rate = hyper['knob'] / budget.total_steps**0.5
  return lambda t: eta0 / (1 + rate * jnp.sqrt(t))


def _exponential(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  # Li, Zhuang and Orabona (2021): eta0 * beta**t with beta = (b / T)**(1 / T).
  log_beta = jnp.log(hyper['knob'] / budget.total_steps) / budget.total_steps
  return lambda t: eta0 * jnp.exp(log_beta * t)


def _cosine(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  del hyper
  return optax.cosine_decay_schedule(eta0, budget.total_steps)


def _warmup_steps(budget: Budget) -> int:
  return max(1, budget.total_steps // 20)


def _prepare_wsd(fraction: float | None, budget: Budget) -> Hyper:
  return {'decay_steps': max(1, round(budget.total_steps * (fraction or 0.2)))}


def _wsd(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  # The library's WSD with its default 1-sqrt cooldown, the shape Hägele et al. (2024) found
  # best and the one the branch demo's cooldowns take: one WSD throughout the examples.
  return osd.wsd_schedule(
    eta0,
    warmup_steps=_warmup_steps(budget),
    decay_steps=hyper['decay_steps'],
    total_steps=budget.total_steps,
  )


def _constant(eta0, hyper: Hyper, budget: Budget) -> optax.Schedule:
  del hyper, budget
  return lambda t: eta0 * jnp.ones_like(t, dtype=jnp.float32)


def _plateau(eta0, hyper: Hyper, budget: Budget, sgd: Sgd) -> optax.GradientTransformation:
  # Evaluated on the mean training loss of each epoch (the `value` of every update).
  cut = osd.reduce_on_plateau(
    decay_factor=hyper['knob'], patience=3, accumulation_size=budget.steps_per_epoch
  )
  return optax.chain(_scheduled(_constant)(eta0, hyper, budget, sgd), cut)


def _auto(eta0, hyper: Hyper, budget: Budget, sgd: Sgd) -> optax.GradientTransformation:
  del hyper, budget  # no horizon, no knob: the library's defaults
  return sgd.around(osd.auto_step_decay(eta0))


def _schedule_free(eta0, hyper, budget: Budget, sgd: Sgd) -> optax.GradientTransformation:
  # Its momentum b1 is the run's momentum (0.9 without one: schedule-free needs its average);
  # its warmup is fixed at wsd's, 5% of the updates, and not tuned.
  del hyper
  free = optax.inject_hyperparams(optax.contrib.schedule_free_sgd, static_args=('warmup_steps',))
  step = free(learning_rate=eta0, warmup_steps=_warmup_steps(budget), b1=sgd.momentum or 0.9)
  return Sgd(momentum=0.0, weight_decay=sgd.weight_decay).around(step)


def _schedule_free_eval(opt_state: optax.OptState, params: optax.Params) -> optax.Params:
  # The schedule-free state is the inner state of its inject_hyperparams wrapper.
  state = optax.tree.get(opt_state, 'inner_state')
  return optax.contrib.schedule_free_eval_params(state, params)


SCHEDULES: dict[str, ScheduleSpec] = {
  'step_decay': ScheduleSpec(
    "the paper's step decay: floor(log_alpha T) stages of equal length, each /alpha",
    _step_decay,
    'step',
    'alpha',
    'the divisor at each cut; it also sets the number of stages',
    (2.0, 3.0, 6.0, 10.0, 20.0),
    _prepare_step_decay,
  ),
  'multistep': ScheduleSpec('/10 at 50% and 75% of the updates', _scheduled(_multistep), 'step'),
  'plateau': ScheduleSpec(
    "reduce_on_plateau on each epoch's training loss, patience 3",
    _plateau,
    'step',
    'decay_factor',
    'the divisor at each cut',
    (2.0, 3.0, 10.0, 30.0),
  ),
  'auto': ScheduleSpec(
    "auto_step_decay (/2 when the distance from its restart stalls), defaults: step_decay's eta0",
    _auto,
    'step',
    eta0_from='step_decay',
  ),
  'constant': ScheduleSpec('eta0 throughout', _scheduled(_constant), 'step'),
  'inv_t': ScheduleSpec(
    'eta0 / (1 + a t)',
    _scheduled(_inv_t),
    'smooth',
    'a_times_T',
    'a T: the step falls to eta0 / (1 + knob) at the end',
    (0.3, 1.0, 3.0, 10.0),
  ),
  'inv_sqrt_t': ScheduleSpec(
    'eta0 / (1 + a sqrt(t))',
    _scheduled(_inv_sqrt_t),
    'smooth',
    'a_times_sqrt_T',
    'a sqrt(T): the step falls to eta0 / (1 + knob) at the end',
    (0.3, 1.0, 3.0, 10.0),
  ),
  'exponential': ScheduleSpec(
    'eta0 (b / T)^(t / T) (Li, Zhuang and Orabona 2021)',
    _scheduled(_exponential),
    'smooth',
    'b',
    'the last step is eta0 b / T',
    (1.0, 10.0, 100.0, 1000.0),
  ),
  'cosine': ScheduleSpec('cosine from eta0 to 0 (optax)', _scheduled(_cosine), 'smooth'),
  'wsd': ScheduleSpec(
    'warmup-stable-decay (osd.wsd_schedule): 5% linear warmup, constant, 1-sqrt to 0',
    _scheduled(_wsd),
    'smooth',
    'decay_fraction',
    'the fraction of the updates spent decaying',
    (0.1, 0.2, 0.4),
    _prepare_wsd,
  ),
  'schedule_free': ScheduleSpec(
    'schedule-free SGD (optax.contrib), 5% warmup, evaluated at its average',
    _schedule_free,
    'smooth',
    eval_params=_schedule_free_eval,
    eta0_scale=8.0,  # its best eta0 was the top of the shared grid: the same grid, 8 times up
  ),
}
COMPARED = tuple(SCHEDULES)  # the README's table
REFERENCE = 'step_decay'  # the comparison's paired differences are taken against it
# The branch demo: cooldowns branched from one run use wsd's tuned eta0, the separately trained
# cosine runs cosine's.
BRANCHED, SEPARATE = 'wsd', 'cosine'


def knob_value(name: str, knob: float | None) -> float | None:
  """The knob a run uses: the one given, else the schedule's default."""
  return SCHEDULES[name].default_knob if knob is None else knob


def build_optimizer(
  name: str,
  eta0: Any,
  hyper: Hyper,
  budget: Budget,
  *,
  momentum: float,
  weight_decay: float,
) -> optax.GradientTransformationExtraArgs:
  """:meth:`ScheduleSpec.optimizer` of the named step size."""
  return SCHEDULES[name].optimizer(
    eta0, hyper, budget, momentum=momentum, weight_decay=weight_decay
  )


def help_text(specs: Mapping[str, Any] = SCHEDULES) -> str:
  """One line per schedule of a registry, with its knob, for --help."""
  lines = []
  for name, spec in specs.items():
    knob = f' knob {spec.knob}: {spec.knob_help}.' if spec.knob else ' no knob.'
    lines.append(f'  {name:14s} {spec.describe};{knob}')
  return '\n'.join(lines)

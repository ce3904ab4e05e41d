"""Step-decay step sizes ("constant, then cut") as Optax schedules and transformations."""

from optax_stepdecay._auto import AutoStepDecayState, auto_step_decay
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._plateau import ReduceOnPlateauState, reduce_on_plateau
from optax_stepdecay._schedules import (
  fixed_horizon_step_decay_schedule,
  geometric_stage_decay_schedule,
  horizon_num_stages,
  multistep_decay_schedule,
  stagewise_schedule,
  step_decay_schedule,
)
from optax_stepdecay._stage_schedule import (
  Stage,
  StageSchedule,
  schedule_from_dict,
  schedule_from_json,
)
from optax_stepdecay._transforms import (
  TrackedLearningRateState,
  current_learning_rate,
  scale_by_tracked_learning_rate,
  step_decay_sgd,
)
from optax_stepdecay._warmup import with_linear_warmup

__version__ = '0.1.0'

__all__ = (
  'AutoStepDecayState',
  'ReduceOnPlateauState',
  'auto_step_decay',
  'reduce_on_plateau',
  'Stage',
  'StageSchedule',
  'TrackedLearningRateState',
  'count_dtype',
  'current_learning_rate',
  'fixed_horizon_step_decay_schedule',
  'geometric_stage_decay_schedule',
  'horizon_num_stages',
  'multistep_decay_schedule',
  'scale_by_tracked_learning_rate',
  'schedule_from_dict',
  'schedule_from_json',
  'stagewise_schedule',
  'step_decay_schedule',
  'step_decay_sgd',
  'with_linear_warmup',
)

"""Step-decay step sizes ("constant, then cut") as Optax schedules and transformations."""

from optax_stepdecay._auto import AutoStepDecayState
from optax_stepdecay._auto import auto_step_decay
from optax_stepdecay._cooldown import CooldownState
from optax_stepdecay._cooldown import scale_by_cooldown
from optax_stepdecay._cooldown import start_cooldown
from optax_stepdecay._counts import count_dtype
from optax_stepdecay._output_rules import AverageState
from optax_stepdecay._output_rules import SampledIterateState
from optax_stepdecay._output_rules import output_params
from optax_stepdecay._output_rules import sample_iterate
from optax_stepdecay._output_rules import stage_average
from optax_stepdecay._output_rules import suffix_average
from optax_stepdecay._plateau import ReduceOnPlateauState
from optax_stepdecay._plateau import reduce_on_plateau
from optax_stepdecay._schedules import fixed_horizon_step_decay_schedule
from optax_stepdecay._schedules import geometric_stage_decay_schedule
from optax_stepdecay._schedules import horizon_num_stages
from optax_stepdecay._schedules import multistep_decay_schedule
from optax_stepdecay._schedules import stagewise_schedule
from optax_stepdecay._schedules import step_decay_schedule
from optax_stepdecay._stage_schedule import Stage
from optax_stepdecay._stage_schedule import StageSchedule
from optax_stepdecay._stage_schedule import schedule_from_dict
from optax_stepdecay._stage_schedule import schedule_from_json
from optax_stepdecay._transforms import TrackedLearningRateState
from optax_stepdecay._transforms import current_learning_rate
from optax_stepdecay._transforms import scale_by_tracked_learning_rate
from optax_stepdecay._transforms import step_decay_sgd
from optax_stepdecay._warmup import with_linear_warmup
from optax_stepdecay._wsd import wsd_schedule

__version__ = '0.2.0'

__all__ = (
  'AutoStepDecayState',
  'AverageState',
  'CooldownState',
  'ReduceOnPlateauState',
  'SampledIterateState',
  'Stage',
  'StageSchedule',
  'TrackedLearningRateState',
  'auto_step_decay',
  'count_dtype',
  'current_learning_rate',
  'fixed_horizon_step_decay_schedule',
  'geometric_stage_decay_schedule',
  'horizon_num_stages',
  'multistep_decay_schedule',
  'output_params',
  'reduce_on_plateau',
  'sample_iterate',
  'scale_by_cooldown',
  'scale_by_tracked_learning_rate',
  'schedule_from_dict',
  'schedule_from_json',
  'stage_average',
  'stagewise_schedule',
  'start_cooldown',
  'step_decay_schedule',
  'step_decay_sgd',
  'suffix_average',
  'with_linear_warmup',
  'wsd_schedule',
)

"""Stage tables, plots and dict / JSON round trips of every schedule."""

import dataclasses
import itertools
import json
import re

import chex
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
import pytest

import optax_stepdecay as osd
from optax_stepdecay import _stage_schedule

matplotlib.use('Agg')

SCHEDULES = {
  'step_decay': osd.step_decay_schedule(
    0.1, decay_factor=3.0, stage_length=100, num_stages=4, transition_begin=10, end_value=0.001
  ),
  'fixed_horizon': osd.fixed_horizon_step_decay_schedule(0.5, total_steps=60_000, decay_factor=6.0),
  'multistep': osd.multistep_decay_schedule(
    0.1, milestones=[2, 5], decay_factor=10.0, steps_per_epoch=100
  ),
  'stagewise': osd.stagewise_schedule([10, 20], values=[0.5, 0.2, 0.05]),
  'geometric': osd.geometric_stage_decay_schedule(
    1.0, first_stage_length=8, decay_factor=2.0, stage_growth=1.5
  ),
  'warmup': osd.with_linear_warmup(
    osd.fixed_horizon_step_decay_schedule(1.0, total_steps=1000, decay_factor=10.0), warmup_steps=50
  ),
}


@pytest.mark.parametrize('name', sorted(SCHEDULES))
def test_json_round_trip_rebuilds_the_same_schedule(name):
  schedule = SCHEDULES[name]
  rebuilt = osd.schedule_from_json(schedule.to_json())
  assert rebuilt.to_dict() == schedule.to_dict()
  assert json.loads(schedule.to_json()) == schedule.to_dict()
  counts = jnp.arange(0, 70_000, 7)
  chex.assert_trees_all_equal(rebuilt(counts), schedule(counts))


@pytest.mark.parametrize('name', sorted(SCHEDULES))
def test_stage_table_values_match_the_schedule(name):
  schedule = SCHEDULES[name]
  rows = schedule.stages(5000)
  assert rows[0].start == 0 and rows[-1].end == 5000
  for row, following in itertools.pairwise(rows):
    assert row.end == following.start
    assert row.value == float(schedule(row.start))
    if row.ramp_to is None:
      assert float(schedule(row.end - 1)) == row.value
      assert float(schedule(following.start)) != row.value


def test_table_rows_and_text():
  schedule = osd.step_decay_schedule(
    0.1, decay_factor=3.0, stage_length=100, num_stages=4, transition_begin=10
  )
  assert [(r.start, r.end) for r in schedule.stages()] == [
    (0, 110),
    (110, 210),
    (210, 310),
    (310, None),
  ]
  text = schedule.stage_table()
  assert text.splitlines()[1].split() == ['0', '0', '110', '0.1']
  assert text.splitlines()[-1].split()[2] == '-'


def test_end_value_floor_merges_stages():
  schedule = osd.step_decay_schedule(1.0, decay_factor=10.0, stage_length=10, end_value=0.01)
  assert [r.start for r in schedule.stages(100)] == [0, 10, 20]


def test_warmup_table_has_a_ramp_row():
  rows = SCHEDULES['warmup'].stages()
  assert rows[0] == osd.Stage(0, 50, 0.0, 1.0)
  assert [r.start for r in rows[1:]] == [50, 383, 716]


def test_infinite_schedule_needs_a_horizon():
  with pytest.raises(ValueError, match='infinitely many stages'):
    osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10).stages()


def test_foreign_schedule_has_no_table_or_json():
  schedule = osd.with_linear_warmup(optax.constant_schedule(0.1), warmup_steps=10)
  with pytest.raises(ValueError, match='not a schedule of this package'):
    schedule.stages(100)
  with pytest.raises(ValueError, match='cannot be serialised'):
    schedule.to_json()


def test_unknown_name_is_rejected():
  with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
    osd.schedule_from_dict({'name': 'cosine', 'args': {}})


def test_plot_draws_stairs_on_a_log_axis():
  ax = SCHEDULES['fixed_horizon'].plot(60_000, label='step decay')
  (line,) = ax.get_lines()
  assert ax.get_yscale() == 'log'
  chex.assert_trees_all_equal(line.get_xdata()[:3], np.asarray([0, 10_000, 10_000]))
  assert line.get_label() == 'step decay'


def test_change_points_beyond_the_limit_raise_instead_of_being_cut_short():
  schedule = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1, transition_begin=5)
  points = schedule.change_points(1_000_006)  # exactly the limit: 6, 7, ..., 1_000_005
  assert len(points) == 1_000_000 and points[0] == 6 and points[-1] == 1_000_005
  with pytest.raises(
    ValueError, match=r'puts 1000001 stage boundaries before step 1000007: .* 1000000 rows'
  ):
    schedule.change_points(1_000_007)
  with pytest.raises(ValueError, match='limited to 1000000 rows'):
    osd.with_linear_warmup(schedule, warmup_steps=3).change_points(2_000_000)
  # The ramp's end makes one more: 1,000,000 points of the wrapped schedule, plus step 3.
  with pytest.raises(ValueError, match=r'^with_linear_warmup\(.* puts 1000001 stage boundaries'):
    osd.with_linear_warmup(schedule, warmup_steps=3).change_points(1_000_009)
  # A bounded number of stages lists them all, however far the horizon.
  finite = osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1, num_stages=3)
  assert finite.change_points() == [1, 2]
  assert finite.change_points(2**32) == [1, 2]
  assert osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10).change_points(10) == []
  assert osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=10).change_points(11) == [10]


FACTORY_RESULTS = {
  **SCHEDULES,
  'wsd': osd.wsd_schedule(1.0, warmup_steps=2, stable_steps=3, decay_steps=4),
  'warmup_wsd': osd.with_linear_warmup(osd.wsd_schedule(1.0, warmup_steps=2), warmup_steps=5),
  'warmup_foreign': osd.with_linear_warmup(optax.cosine_decay_schedule(1.0, 20), warmup_steps=5),
}


@pytest.mark.parametrize('name', sorted(FACTORY_RESULTS))
def test_every_factory_returns_a_frozen_schedule_value(name):
  schedule = FACTORY_RESULTS[name]
  assert isinstance(schedule, osd.StageSchedule)
  with pytest.raises(dataclasses.FrozenInstanceError):
    schedule.num_stages = 7  # type: ignore[misc]
  assert hash(schedule) == object.__hash__(schedule)  # identity, as a dict field needs
  assert repr(schedule).startswith(f'{schedule.name}(')
  twin = dataclasses.replace(schedule)
  assert twin != schedule and repr(twin) == repr(schedule)


@pytest.mark.parametrize('name', sorted(set(FACTORY_RESULTS) - {'warmup_foreign'}))
def test_change_points_beyond_the_limit_raise_for_every_factory(name, monkeypatch):
  schedule = FACTORY_RESULTS[name]
  points = schedule.change_points(10**6)
  monkeypatch.setattr(_stage_schedule, 'MAX_TABLE_ROWS', len(points) - 1)
  message = f'{schedule!r} puts {len(points)} stage boundaries before step 1000000: '
  with pytest.raises(ValueError, match=re.escape(message + 'change points and stage tables')):
    schedule.change_points(10**6)

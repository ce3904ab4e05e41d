"""Smoke tests of the example entry points, checkpoint resume and data parallelism."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from examples import compare_schedules
from examples import data
from examples import schedules
from examples import train
from examples import training

ROOT = Path(__file__).resolve().parent.parent


def test_train_entry_point(tmp_path):
  result = train.main(['--epochs', '1', '--schedule', 'step_decay', '--lr', '0.3',
                       '--out', str(tmp_path)])  # fmt: skip
  history = json.loads((tmp_path / 'history.json').read_text())
  assert len(history) == 1 and history[0]['test_accuracy'] > 0.5
  assert len(json.loads((tmp_path / 'learning_rates.json').read_text())) == 42
  assert result.finished


@pytest.mark.parametrize('model', ['cnn', 'resnet20'])
def test_convolutional_models_train(model):
  dataset = data.load_digits_dataset()
  small = data.Dataset('tiny', dataset.x_train[:64], dataset.y_train[:64],
                       dataset.x_test[:32], dataset.y_test[:32], 10)  # fmt: skip
  if model == 'resnet20':  # 32x32x3 images, as CIFAR's
    small = data.Dataset('tiny', *(np.tile(np.kron(a, np.ones((1, 4, 4, 1))), (1, 1, 1, 3))
                                   if a.ndim == 4 else a for a in (small.x_train, small.y_train,
                                   small.x_test, small.y_test)), 10)  # fmt: skip
  result = training.train(training.RunConfig(model=model, epochs=1, progress=False), small)
  assert np.isfinite(result.history[0]['train_loss'])


def test_compare_schedules_entry_point(tmp_path):
  names = 'step_decay,constant,plateau,auto,schedule_free'
  compare_schedules.main(['--schedules', names, '--seeds', '2', '--epochs', '2', '--lr', '0.1',
                          '--out', str(tmp_path)])  # fmt: skip
  rows = (tmp_path / 'results.csv').read_text().splitlines()
  assert len(rows) == 1 + 5 * 2 * 2  # header + schedule x seed x epoch
  table = [line for line in (tmp_path / 'results.md').read_text().splitlines() if '±' in line]
  assert len(table) == 1 + 5  # the header line, then one row per schedule
  for plot in ('learning_rate', 'train_loss', 'test_accuracy'):
    assert (tmp_path / f'{plot}.png').stat().st_size > 1000


def test_every_named_schedule_builds_and_logs_its_rate():
  budget = schedules.Budget(total_steps=100, steps_per_epoch=10)
  for name in schedules.SCHEDULES:
    tx = schedules.build_optimizer(name, 0.1, None, budget, momentum=0.9, weight_decay=1e-4)
    params = {'w': jax.numpy.ones(3)}
    state = tx.init(params)
    _, state = tx.update(params, state, params, value=1.0)
    assert float(training.osd.current_learning_rate(state)) >= 0


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
  config = training.RunConfig(epochs=2, schedule='step_decay', lr=0.3, knob=2.0, progress=False)
  dataset = data.load_digits_dataset()
  full = training.train(config, dataset)
  checkpoint = str(tmp_path / 'ckpt')
  stopped = training.train(
    training.RunConfig(**{**vars(config), 'checkpoint_dir': checkpoint, 'stop_after_steps': 50}),
    dataset,
  )
  assert not stopped.finished and len(stopped.learning_rates) == 50
  resumed = training.train(
    training.RunConfig(**{**vars(config), 'checkpoint_dir': checkpoint}), dataset
  )
  assert resumed.finished
  np.testing.assert_array_equal(
    resumed.learning_rates, full.learning_rates
  )  # mid-stage continuation
  np.testing.assert_allclose(
    training.flat_params(resumed.model), training.flat_params(full.model), rtol=1e-6, atol=1e-7
  )
  assert [r['epoch'] for r in resumed.history] == [1, 2]


SHARDED_RUN = """
import json, sys
sys.path.insert(0, {root!r})
import jax
from examples import training
assert jax.device_count() == 8, jax.devices()
result = training.train(training.RunConfig(epochs=2, schedule='step_decay', lr=0.3, progress=False))
print(json.dumps(training.flat_params(result.model).tolist()))
"""


def test_eight_devices_match_one():
  env = {
    **os.environ,
    'XLA_FLAGS': '--xla_force_host_platform_device_count=8',
    'JAX_PLATFORMS': 'cpu',
  }
  out = subprocess.run(
    [sys.executable, '-c', SHARDED_RUN.format(root=str(ROOT))],
    env=env, capture_output=True, text=True, check=True, timeout=600,
  )  # fmt: skip
  sharded = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
  config = training.RunConfig(epochs=2, schedule='step_decay', lr=0.3, progress=False)
  single = training.train(config)
  assert jax.device_count() == 1
  np.testing.assert_allclose(sharded, training.flat_params(single.model), rtol=1e-4, atol=1e-5)


def test_batch_must_split_across_devices(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  with pytest.raises(ValueError, match='batch_size=30 must be divisible by the 8 devices'):
    training.DataParallel(30)

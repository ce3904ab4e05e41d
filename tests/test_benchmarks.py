"""The benchmark scripts run end to end in their --quick mode (no timing assertions)."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent.parent / 'benchmarks'


def load(name):
  spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  sys.modules[name] = module
  spec.loader.exec_module(module)
  return module


def test_perf_quick_writes_report(tmp_path):
  results = load('perf').main(['--quick', '--out', str(tmp_path)])
  saved = json.loads((tmp_path / 'perf.json').read_text())
  assert saved['per_step']['rows'][0]['ratio_to_a'] == 1.0
  assert {row['milestones'] for row in saved['milestones']['rows']} == {10, 100}
  assert saved['sweep']['configs'] == 64
  assert results['sweep']['best']['train_loss'] > 0
  report = (tmp_path / 'perf.md').read_text()
  assert '## 4. Throughput' in report


def test_theory_quick_writes_rates(tmp_path):
  results = load('theory').main(['--quick', '--out', str(tmp_path)])
  assert set(results['problems']) == {
    'logistic', 'least_squares', 'lad', 'hinge', 'nonconvex', 'nonconvex_last_iterate'
  }  # fmt: skip
  for problem in results['problems'].values():
    assert set(problem['slopes']) == set(results['schedules'])
    for rows in problem['rows'].values():
      assert all(r['mean'] > 0 and r['eta0'] in problem['eta0_grid'] for r in rows)
  assert (tmp_path / 'rates.png').stat().st_size > 10_000
  assert 'Fitted log-log slopes' in (tmp_path / 'rates.md').read_text()


def test_theory_optimal_values_are_minima():
  theory = load('theory')
  rng = np.random.default_rng(0)
  for problem in theory.problems():
    if problem.f_star is None:
      continue
    d = problem.x.shape[1]
    for _ in range(20):
      w = rng.normal(0, 0.3, d)
      if problem.radius is not None:
        w *= min(1.0, problem.radius / np.linalg.norm(w))
      assert problem.objective(w) >= problem.f_star - 1e-9, problem.name

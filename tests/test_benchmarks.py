"""The benchmark scripts run end to end in their --quick mode (no timing assertions)."""

import importlib.util
import json
import sys
from pathlib import Path

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

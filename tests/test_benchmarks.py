"""The benchmarks run end to end in their --quick mode (no timing assertions)."""

import json
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import anytime
from benchmarks import auto_family
from benchmarks import auto_traces
from benchmarks import perf
from benchmarks import runner
from benchmarks import theory
from benchmarks.problems import all_problems
from benchmarks.runner import Results
from tests import processes

ROOT = processes.ROOT
BENCHMARKS = ('anytime', 'auto_candidates', 'auto_family', 'auto_traces', 'perf', 'theory')


def test_perf_quick_writes_report(tmp_path):
  results = perf.main(['--quick', '--out', str(tmp_path)])
  saved = json.loads((tmp_path / 'perf.json').read_text())
  assert saved['per_step']['rows'][0]['ratio_to_a'] == 1.0
  assert {row['milestones'] for row in saved['milestones']['rows']} == {10, 100}
  assert saved['sweep']['configs'] == 16
  for method, difference in saved['sweep']['median_relative_loss_difference'].items():
    assert difference < 1e-5, method  # Optax's two ways run the same schedules
  assert results['sweep']['best']['train_loss'] > 0
  report = (tmp_path / 'perf.md').read_text()
  assert '## 4. Throughput' in report
  assert all(name in report for name in perf.SWEEP_METHODS.values())


def test_theory_quick_writes_rates(tmp_path):
  results = theory.main(['--quick', '--out', str(tmp_path)])
  assert isinstance(results, Results)
  assert set(results.problems) == {
    'logistic', 'least_squares', 'lad', 'hinge', 'nonconvex', 'nonconvex_last_iterate'
  }  # fmt: skip
  for problem in results.problems.values():
    assert set(problem.slopes) == set(results.schedules)
    assert list(problem.rows) == results.schedules
    for summaries in problem.rows.values():
      assert len(summaries) == len(results.horizons)
      assert all(s.mean > 0 and s.eta0 in problem.eta0_grid for s in summaries)
  saved = json.loads((tmp_path / 'rates.json').read_text())
  assert saved['command'] == f'python -m benchmarks.theory --quick --out {tmp_path}'
  assert saved['problems']['logistic']['rows']['auto'][0]['eta0'] in theory.QUICK.grid
  assert (tmp_path / 'rates.png').stat().st_size > 10_000
  assert 'Fitted log-log slopes' in (tmp_path / 'rates.md').read_text()


def test_theory_optimal_values_are_minima():
  rng = np.random.default_rng(0)
  for problem in all_problems():
    if problem.f_star is None:
      continue
    d = problem.x.shape[1]
    for _ in range(20):
      w = rng.normal(0, 0.3, d)
      if problem.radius is not None:
        w *= min(1.0, problem.radius / np.linalg.norm(w))
      assert problem.objective(w) >= problem.f_star - 1e-9, problem.name


def test_auto_traces_quick_writes_report(tmp_path):
  cases, network = auto_traces.main(['--quick', '--out', str(tmp_path)])
  assert [(c.problem, c.horizon) for c in cases] == [('least_squares', 1024), ('lad', 1024)]
  for case in cases:
    # Step decay follows the paper's schedule; auto halves at each cut, the first no earlier
    # than its second check (96 updates), each later one after the count grew by 1.5 to 2.
    assert auto_traces.cut_steps(case.step_decay.learning_rate[0])
    for rates, checks in zip(case.auto.learning_rate, case.auto.terms, strict=True):
      cuts = auto_traces.cut_steps(rates)
      assert cuts and anytime.in_family(np.array(cuts), 1024, 96, (1.5, 2.0)), cuts
      chex.assert_trees_all_close(rates[-1], case.eta0 / 2 ** len(cuts), rtol=1e-5)
      chex.assert_trees_all_equal(np.flatnonzero(checks[:, 1] == 1) + 1, np.array(cuts))
      assert np.sum(~np.isnan(checks[:, 0])) < 100  # checks on a geometric grid: few
  assert network.learning_rate.shape[0] == 2 and np.all(network.learning_rate > 0)
  report = (tmp_path / 'auto_traces.md').read_text()
  assert report.count('\n| least_squares |') == 1 and '## MNIST-1D' in report
  assert (tmp_path / 'auto_traces.png').stat().st_size > 10_000


def test_anytime_expected_errors_match_sampled_sgd(x64):
  problem = next(p for p in all_problems() if p.name == 'least_squares')
  step_sizes = np.r_[np.full(150, 0.3), np.full(50, 0.03)]
  exact = np.asarray(anytime.expected_errors(anytime.moments(problem), jnp.asarray(step_sizes)))
  # Both ways of running a piecewise-constant sequence agree.
  assert abs(anytime.final_error(anytime.moments(problem), step_sizes) / exact[-1] - 1) < 1e-9
  tx = optax.sgd(optax.piecewise_constant_schedule(0.3, {150: 0.1}))
  seeds = jnp.arange(2048)
  last = jax.jit(jax.vmap(lambda seed: runner.trajectory(problem, 200, tx, seed)[0]))(seeds)
  sampled = runner.errors_of(problem, last, last)[problem.name]
  standard_error = sampled.std(ddof=1) / np.sqrt(len(sampled))
  assert abs(sampled.mean() - exact[-1]) < 4 * standard_error, (sampled.mean(), exact[-1])
  assert standard_error < 0.05 * exact[-1]  # the check resolves a 20% error


def test_anytime_quick_writes_report(tmp_path):
  results = anytime.main(['--quick', '--out', str(tmp_path)])
  assert results.horizons == [128, 181, 256, 362, 512]
  assert all(e > 0 for e in results.step_decay_errors)
  best, *staircases = results.candidates
  assert best.ratios.max() <= min(c.ratios.max() for c in staircases)
  for c in staircases:
    cuts = auto_traces.cut_steps(c.step_sizes)
    if c.name.startswith("auto_step_decay's family"):
      assert anytime.in_family(np.array(cuts), results.horizons[-1], 96, (1.5, 2.0)), cuts
    if c.name.endswith(f'>= {results.min_stage}'):
      assert all(b - a >= results.min_stage for a, b in zip([0, *cuts], cuts, strict=False)), c.name
  assert jax.config.read('jax_enable_x64') is False
  assert '| best sequence found |' in (tmp_path / 'anytime.md').read_text()
  assert (tmp_path / 'anytime.png').stat().st_size > 10_000


def test_auto_family_sampled_ratios_match_the_exact_calculation(x64):
  problem = next(p for p in all_problems() if p.name == 'least_squares')
  model = anytime.moments(problem)
  horizons, reference = [100, 200], np.array([1e-3, 5e-4])
  step_sizes = anytime.staircase(np.array([120, 170]), 0.3, 2.0, 200)
  exact = anytime.worst_ratio(model, horizons, reference)(jnp.asarray(step_sizes[None]))
  sampled = auto_family.sampled_worst(problem, horizons, jnp.arange(2048), reference)
  chex.assert_trees_all_close(sampled(step_sizes[None]), np.asarray(exact), rtol=0.05)


def test_auto_family_finds_a_staircase_of_the_family():
  problem = next(p for p in all_problems() if p.name == 'lad')
  settings = theory.Settings([128, 256], 2, runner.ETA0_GRID[4:7])
  result = auto_family.run_problem(problem, settings)
  assert anytime.in_family(np.array(result['cuts']), 256, 96, (1.5, 2.0)), result['cuts']
  assert result['family_eta0'] in settings.grid and result['auto_eta0'] in settings.grid
  for ratios in (result['family'], result['auto']):
    assert len(ratios) == 2 and all(0 < r < np.inf for r in ratios)
  report = auto_family.markdown({'lad': result}, settings.horizons, 2, 'command', 1.0)
  assert report.count('\n| lad |') == 2


NO_DOCSTRINGS = """
import contextlib, importlib, io, sys
for name in sys.argv[1:]:
  module = importlib.import_module(f'benchmarks.{name}')
  assert module.__doc__ is None
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      module.main(['--help'])
  except SystemExit as stop:
    assert stop.code == 0, name
"""


def test_help_works_without_docstrings():
  out = processes.run_python(['-OO', '-c', NO_DOCSTRINGS, *BENCHMARKS], timeout=120)
  assert out.returncode == 0, out.stderr


def test_every_benchmark_is_run_as_a_module():
  written = [ROOT / 'README.md', ROOT / 'Makefile', *ROOT.glob('docs/*.md')]
  for pattern in ('benchmarks/*.py', 'benchmarks/results/*.json', 'benchmarks/results/*.md'):
    written += ROOT.glob(pattern)
  for path in written:
    assert not re.search(r'python3? benchmarks/', path.read_text()), path
  for name in BENCHMARKS:
    usage = (ROOT / f'benchmarks/{name}.py').read_text().split('"""')[1]
    assert f'python -m benchmarks.{name} ' in usage, name

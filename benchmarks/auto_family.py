"""How close any staircase that auto_step_decay's bounds allow can get to tuned step decay, sampled.

Usage:
  python -m benchmarks.auto_family --out DIR [--quick]

benchmarks.anytime answers this exactly on least squares, where expected
errors have a closed form. On the other problems they do not, so this
benchmark searches auto_step_decay's family (its decay factor; a first cut no
earlier than its second check; each later cut once the count has grown by
min_growth, and no later than by fallback_growth) with the same search as
benchmarks.anytime, scoring each staircase by simulation: the mean error over
the tuning seeds of one run per seed, read at every horizon of
benchmarks.theory, over step decay tuned for that horizon on the same seeds.
The staircase found is then run on the reported seeds, and its ratios to
tuned step decay there are reported next to auto_step_decay's own (measured
as in rates.md). On least squares the result can be checked against the
exact calculation. Writes DIR/auto_family.md and DIR/auto_family.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import anytime
from benchmarks import runner
from benchmarks import theory
from benchmarks.auto_traces import cut_steps
from benchmarks.problems import Problem
from benchmarks.problems import all_problems

PROBLEMS = ('least_squares', 'lad')  # where auto's ratio in rates.md stays above 2


def staircase_errors(problem: Problem, horizons: list[int], seeds, step_sizes: np.ndarray):
  """Errors (last iterate), shape (batch, seeds, horizons), of step sizes [batch, T]."""

  def make_tx(table):
    return optax.scale_by_learning_rate(lambda count: table[count])

  tables = jnp.asarray(step_sizes, jnp.float32)
  errors = runner.run_anytime(problem, horizons, seeds, make_tx, tables, config_axes=1)
  return errors[runner.last_iterate_key(problem)]


def sampled_worst(
  problem: Problem, horizons: list[int], seeds, reference: np.ndarray
) -> Callable[[np.ndarray], np.ndarray]:
  """Step sizes [batch, T] -> the worst ratio over `horizons` of mean errors to `reference`."""

  def worst(step_sizes: np.ndarray) -> np.ndarray:
    ratios = staircase_errors(problem, horizons, seeds, step_sizes).mean(axis=-2) / reference
    # A diverging staircase overflows to inf or NaN: never the best.
    return np.max(np.where(np.isfinite(ratios) & (ratios > 0), ratios, np.inf), axis=-1)

  return worst


def run_problem(problem: Problem, settings: theory.Settings) -> dict:
  """The family's best staircase on the tuning seeds, and it and auto on the reported seeds."""
  horizons = settings.horizons
  tune, reported = runner.tuned_step_decay_means(problem, horizons, settings.seeds, settings.grid)
  alpha, first, growth = anytime.family_bounds()
  worst = sampled_worst(problem, horizons, runner.tuning_seeds(settings.seeds), tune)
  eta0, cuts = anytime.best_family_staircase(worst, horizons[-1], alpha, first, growth)
  step_sizes = anytime.staircase(cuts, eta0, alpha, horizons[-1])
  reported_seeds = runner.reported_seeds(settings.seeds)
  errors = staircase_errors(problem, horizons, reported_seeds, step_sizes[None])[0]
  auto_errors, auto_eta0 = runner.run_auto(problem, horizons, settings.seeds, settings.grid, tune)
  return {
    'family': list(errors.mean(axis=0) / reported),
    'family_eta0': float(eta0),
    'cuts': cut_steps(step_sizes),
    'auto': list(auto_errors[runner.last_iterate_key(problem)][0].mean(axis=0) / reported),
    'auto_eta0': float(auto_eta0[0]),
  }


def markdown(results: dict, horizons: list[int], seeds: int, command: str, elapsed: float) -> str:
  alpha, first, growth = anytime.family_bounds()
  lines = [
    "# auto_step_decay's family on the benchmark's problems, by simulation",
    '',
    f'Command: `{command}` ({elapsed:.0f} s). The family: staircases eta0 / {alpha:g}^k whose '
    f'first cut is at update {first} or later and each later one once the count has grown by '
    f'{growth[0]:g} to {growth[1]:g}. The staircase with the lowest worst ratio found on '
    f'{seeds} tuning seeds (eta0 from the benchmark grid, cut times searched as in '
    f'benchmarks.anytime), then run on {seeds} reported seeds. Cell: mean error (last iterate) '
    'over that of step decay tuned for T, on the reported seeds; auto: auto_step_decay with '
    'its defaults, measured as in rates.md. A search: a better staircase of the family may '
    'exist, and a sampled one carries seed noise.',
    '',
    '| problem | sequence | worst | ' + ' | '.join(f'T={t}' for t in horizons) + ' |',
    '|---|---|---:|' + '---:|' * len(horizons),
  ]
  for name, result in results.items():
    for label, eta0 in (('family', 'family_eta0'), ('auto', 'auto_eta0')):
      ratios = result[label]
      cells = ' | '.join(f'{r:.2f}' for r in ratios)
      lines.append(f'| {name} | {label}, eta0 = {result[eta0]:g} | {max(ratios):.2f} | {cells} |')
  lines += ['', "The family's best staircases found cut after updates:", '']
  lines += [f'- {name}: {result["cuts"]}' for name, result in results.items()]
  return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict:
  """Runs the search on each problem of PROBLEMS, writes the table and prints it."""
  args, settings = theory.parse(argv, __doc__)
  started = time.perf_counter()
  results = {}
  for problem in all_problems():
    if problem.name in PROBLEMS:
      results[problem.name] = run_problem(problem, settings)
      print(f'[auto_family] {problem.name}', flush=True)
  quick = ' --quick' if args.quick else ''
  command = f'python -m benchmarks.auto_family{quick} --out {args.out}'
  elapsed = time.perf_counter() - started
  text = markdown(results, settings.horizons, settings.seeds, command, elapsed)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'auto_family.md').write_text(text)
  summary = {'command': command, 'horizons': settings.horizons, 'problems': results}
  (args.out / 'auto_family.json').write_text(json.dumps(summary, indent=1))
  print(text)
  return summary


if __name__ == '__main__':
  main()

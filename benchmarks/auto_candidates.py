"""The candidate rules auto_step_decay's defaults were chosen from, on the convergence benchmark.

Usage:
  python -m benchmarks.auto_candidates --out DIR [--quick]

Each candidate is auto_step_decay with some arguments changed from the
defaults, measured as benchmarks.theory measures auto: one run per seed to the
longest horizon, read at every horizon, one eta0 per problem chosen on the
tuning seeds (the lowest worst ratio to tuned step decay there), errors on
the reported seeds. The ratio is auto's mean error over that of step decay
tuned for each horizon (its eta0 tuned per horizon on the tuning seeds), at
the last iterate. Writes DIR/auto_candidates.md and DIR/auto_candidates.json.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
from pathlib import Path

import numpy as np

import optax_stepdecay as osd
from benchmarks import report
from benchmarks import runner
from benchmarks import theory
from benchmarks.problems import all_problems

# Name: the arguments that differ from the library's defaults (all candidates set the same ones).
CANDIDATES: dict[str, dict[str, float | None]] = {
  'defaults': {},
  'Pesme et al. as published: first check 8, no bounds on the growth': dict(
    first_check=8, min_growth=1.0, fallback_growth=None
  ),
  'the same, decay 10': dict(first_check=8, min_growth=1.0, fallback_growth=None, decay_factor=10),
  'first check 8': dict(first_check=8),
  'first check 256': dict(first_check=256),
  'no fallback': dict(fallback_growth=None),
  'min growth 1.25': dict(min_growth=1.25),
  'min growth 2, fallback 4': dict(min_growth=2.0, fallback_growth=4.0),
  'slope threshold 0.3': dict(slope_threshold=0.3),
  'slope threshold 1': dict(slope_threshold=1.0),
}
ARGUMENTS = ('decay_factor', 'first_check', 'min_growth', 'fallback_growth', 'slope_threshold')


def variants() -> list[dict[str, float | None]]:
  """Every candidate as a full set of the arguments in ARGUMENTS."""
  defaults = {n: p.default for n, p in inspect.signature(osd.auto_step_decay).parameters.items()}
  return [{name: changes.get(name, defaults[name]) for name in ARGUMENTS}
          for changes in CANDIDATES.values()]  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
  """Runs every candidate on every problem, writes the table and prints it."""
  parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True)
  parser.add_argument('--quick', action='store_true', help='3 small horizons, 4 seeds')
  args = parser.parse_args(argv)
  settings = theory.QUICK if args.quick else theory.FULL
  started = time.perf_counter()
  ratios: dict[str, dict[str, list[float]]] = {name: {} for name in CANDIDATES}
  eta0s: dict[str, dict[str, float]] = {name: {} for name in CANDIDATES}
  for problem in all_problems():
    key = runner.last_iterate_key(problem)
    tune, reported = [], []
    for horizon in settings.horizons:
      summaries, tuned_means = runner.run_open_loop(problem, horizon, settings.seeds,
                                                    settings.grid)  # fmt: skip
      tune.append(tuned_means[key][runner.STEP_DECAY])
      reported.append(summaries[key][runner.STEP_DECAY].mean)
    errors, chosen = runner.run_auto(problem, settings.horizons, settings.seeds, settings.grid,
                                     np.array(tune), variants())  # fmt: skip
    for name, by_seed, eta0 in zip(CANDIDATES, errors[key], chosen, strict=True):
      ratios[name][problem.name] = list(by_seed.mean(axis=0) / np.array(reported))
      eta0s[name][problem.name] = float(eta0)
    print(f'[auto_candidates] {problem.name}', flush=True)
  quick = ' --quick' if args.quick else ''
  command = f'python -m benchmarks.auto_candidates{quick} --out {args.out}'
  problems = list(ratios['defaults'])
  lines = [
    '# auto_step_decay: the candidates its defaults were chosen from',
    '',
    f'Command: `{command}` ({time.perf_counter() - started:.0f} s). {settings.seeds} tuning and '
    f'{settings.seeds} reported seeds, horizons {settings.horizons[0]} to '
    f"{settings.horizons[-1]}. Defaults: {report.auto_defaults()}. Cell: auto's worst ratio of "
    'mean errors (last iterate) to step decay tuned for each horizon, over the horizons, with '
    "auto's one eta0 for the problem in parentheses.",
    '',
    '| candidate | ' + ' | '.join(problems) + ' | worst |',
    '|---|' + '---:|' * (len(problems) + 1),
  ]
  for name in CANDIDATES:
    cells = [f'{max(ratios[name][p]):.2f} ({eta0s[name][p]:g})' for p in problems]
    worst = max(max(ratios[name][p]) for p in problems)
    lines.append(f'| {name} | ' + ' | '.join(cells) + f' | {worst:.2f} |')
  text = '\n'.join(lines) + '\n'
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'auto_candidates.md').write_text(text)
  results = {'command': command, 'horizons': settings.horizons, 'ratios': ratios, 'eta0': eta0s}
  (args.out / 'auto_candidates.json').write_text(json.dumps(results, indent=1))
  print(text)
  return results


if __name__ == '__main__':
  main()

"""The candidate rules auto_step_decay's defaults were chosen from, on the convergence benchmark.

Usage:
  python -m benchmarks.auto_candidates --out DIR [--quick]

Each candidate is auto_step_decay with some arguments changed from the
defaults, measured as benchmarks.theory measures auto: one run per seed to the
longest horizon, read at every horizon, one eta0 per problem chosen on the
tuning seeds (the lowest worst ratio to tuned step decay there), errors on
the reported seeds. The ratio is auto's mean error over that of step decay
tuned for each horizon (its eta0 tuned per horizon on the tuning seeds), at
the last iterate. Also trains each candidate on the examples' MNIST-1D CNN from
step decay's tuned eta0, on the tuning protocol's validation split and seeds
(the test set is never used), and reports its final validation accuracy.
Writes DIR/auto_candidates.md and DIR/auto_candidates.json.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import time

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
  'slope threshold 0.6': dict(slope_threshold=0.6),
  'slope threshold 1': dict(slope_threshold=1.0),
}
ARGUMENTS = ('decay_factor', 'first_check', 'min_growth', 'fallback_growth', 'slope_threshold')


def variants() -> list[dict[str, float | None]]:
  """Every candidate as a full set of the arguments in ARGUMENTS."""
  defaults = {n: p.default for n, p in inspect.signature(osd.auto_step_decay).parameters.items()}
  return [{name: changes.get(name, defaults[name]) for name in ARGUMENTS}
          for changes in CANDIDATES.values()]  # fmt: skip


def mnist1d_validation(epochs: int | None = None) -> dict[str, list[float]]:
  """Final validation accuracy per tuning seed: tuned step decay, then each candidate."""
  from examples import compare
  from examples import configs
  from examples import data
  from examples import schedules
  from examples import sweep

  tuned = configs.load_tuned('mnist1d')
  assert tuned is not None
  config = configs.Config(**tuned['config'])
  config = dataclasses.replace(config, epochs=epochs or config.epochs)
  validation = data.load_dataset('mnist1d').validation_split(**compare.VALIDATION)
  step_decay = tuned['schedules'][runner.STEP_DECAY]

  def accuracy(name: str, knob: float | None, spec: schedules.ScheduleSpec) -> list[float]:
    members = [sweep.Member(step_decay['eta0'], knob, seed) for seed in compare.TUNING_SEEDS]
    result = sweep.train_many(dataclasses.replace(config, schedule=name), members, validation, spec)
    return result.test_accuracy[:, -1].tolist()

  def auto(changes: dict[str, float | None]) -> schedules.ScheduleSpec:
    return dataclasses.replace(
      schedules.SCHEDULES['auto'],
      build=lambda eta0, hyper, budget, sgd: sgd.around(osd.auto_step_decay(eta0, **changes)),
    )

  scores = {
    runner.STEP_DECAY: accuracy(
      runner.STEP_DECAY, step_decay['knob'], schedules.SCHEDULES[runner.STEP_DECAY]
    )
  }
  for name, changes in CANDIDATES.items():
    scores[name] = accuracy('auto', None, auto(changes))
    print(f'[auto_candidates] mnist1d {name}', flush=True)
  return scores


def main(argv: list[str] | None = None) -> dict:
  """Runs every candidate on every problem, writes the table and prints it."""
  args, settings = theory.parse(argv, __doc__)
  started = time.perf_counter()
  ratios: dict[str, dict[str, list[float]]] = {name: {} for name in CANDIDATES}
  eta0s: dict[str, dict[str, float]] = {name: {} for name in CANDIDATES}
  for problem in all_problems():
    key = runner.last_iterate_key(problem)
    tune, reported = runner.tuned_step_decay_means(
      problem, settings.horizons, settings.seeds, settings.grid
    )
    errors, chosen = runner.run_auto(problem, settings.horizons, settings.seeds, settings.grid,
                                     tune, variants())  # fmt: skip
    for name, by_seed, eta0 in zip(CANDIDATES, errors[key], chosen, strict=True):
      ratios[name][problem.name] = list(by_seed.mean(axis=0) / reported)
      eta0s[name][problem.name] = float(eta0)
    print(f'[auto_candidates] {problem.name}', flush=True)
  accuracy = mnist1d_validation(epochs=2 if args.quick else None)
  mean_accuracy = {name: float(np.mean(values)) for name, values in accuracy.items()}
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
    "auto's one eta0 for the problem in parentheses. MNIST-1D: the examples' CNN from step "
    "decay's tuned eta0, mean final accuracy on the tuning protocol's validation split over its "
    f'{len(accuracy[runner.STEP_DECAY])} seeds (the test set is not used); tuned step decay '
    f'reaches {mean_accuracy[runner.STEP_DECAY]:.4f} there.',
    '',
    '| candidate | ' + ' | '.join(problems) + ' | worst | MNIST-1D |',
    '|---|' + '---:|' * (len(problems) + 2),
  ]
  for name in CANDIDATES:
    cells = [f'{max(ratios[name][p]):.2f} ({eta0s[name][p]:g})' for p in problems]
    worst = max(max(ratios[name][p]) for p in problems)
    lines.append(
      f'| {name} | ' + ' | '.join(cells) + f' | {worst:.2f} | {mean_accuracy[name]:.4f} |'
    )
  text = '\n'.join(lines) + '\n'
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'auto_candidates.md').write_text(text)
  results = {
    'command': command,
    'horizons': settings.horizons,
    'ratios': ratios,
    'eta0': eta0s,
    'mnist1d_validation_accuracy': accuracy,
  }
  (args.out / 'auto_candidates.json').write_text(json.dumps(results, indent=1))
  print(text)
  return results


if __name__ == '__main__':
  main()

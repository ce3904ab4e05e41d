"""Step sizes compared under one budget: the tuning protocol, the comparison and its report.

TUNING: ``TUNING_PROTOCOL`` below, which every tuned file records. ``auto`` is
not tuned: it starts from step_decay's eta0.

COMPARISON: every schedule runs with its tuned setting on the whole training
set for seeds 0..n-1 (the same initialisations and batch orders for every
schedule, so differences are paired) and is scored on the test set.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from examples import configs
from examples import data as data_lib
from examples import schedules
from examples import sweep
from examples import train

ETA0_GRID = tuple(0.0125 * 2**k for k in range(7))  # 0.0125 ... 0.8
TUNING_SEEDS = (1000, 1001, 1002)
VALIDATION = {'fraction': 0.2, 'seed': 1000}
# A constant, not the docstring: `python -OO` strips docstrings.
TUNING_PROTOCOL = (
  f'the training set is split {round(100 * (1 - VALIDATION["fraction"]))}/'
  f'{round(100 * VALIDATION["fraction"])} (seed {VALIDATION["seed"]}) into training and '
  'validation data; the test set is never used. For each schedule, every eta0 of ETA0_GRID '
  "(factors of 2; times the schedule's eta0_scale, 8 for schedule_free) times every value "
  'of its knob grid is trained on '
  f'{len(TUNING_SEEDS)} seeds ({TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]}), and the setting with the '
  'best mean final validation accuracy (ties: lower validation loss) is kept. ``auto`` is not '
  "tuned: it starts from step_decay's eta0."
)


def eta0_grid_of(name: str) -> tuple[float, ...]:
  """The eta0 values tuning tries for schedule ``name``."""
  return tuple(eta0 * schedules.SCHEDULES[name].eta0_scale for eta0 in ETA0_GRID)


def tune(config: configs.Config, names: list[str], dataset: data_lib.Dataset) -> dict:
  """The tuning protocol (``TUNING_PROTOCOL``); returns the tuned settings with every score."""
  validation = dataset.validation_split(**VALIDATION)
  tuned: dict = {
    'protocol': TUNING_PROTOCOL,
    'eta0_grid': ETA0_GRID,
    'seeds': TUNING_SEEDS,
    'config': dataclasses.asdict(config),
    'schedules': {},
  }
  for name in names:
    spec = schedules.SCHEDULES[name]
    if spec.eta0_from:
      continue
    eta0_grid = eta0_grid_of(name)
    grid = [(eta0, knob) for eta0 in eta0_grid for knob in spec.knob_grid or (None,)]
    members = [sweep.Member(eta0, knob, seed) for eta0, knob in grid for seed in TUNING_SEEDS]
    result = sweep.train_many(dataclasses.replace(config, schedule=name), members, validation)
    accuracy = result.test_accuracy[:, -1].reshape(len(grid), len(TUNING_SEEDS)).mean(axis=1)
    loss = result.test_loss[:, -1].reshape(len(grid), len(TUNING_SEEDS)).mean(axis=1)
    loss = np.where(np.isfinite(loss), loss, np.inf)
    best = min(range(len(grid)), key=lambda i: (-accuracy[i], loss[i]))
    eta0, knob = grid[best]
    tuned['schedules'][name] = {
      'eta0': eta0,
      'knob': knob,
      'validation_accuracy': float(accuracy[best]),
      'eta0_at_grid_edge': eta0 in (eta0_grid[0], eta0_grid[-1]),
      'scores': [
        {'eta0': e, 'knob': k, 'validation_accuracy': float(a), 'validation_loss': float(lo)}
        for (e, k), a, lo in zip(grid, accuracy, loss, strict=True)
      ],
    }
    edge = ' (at the edge of the grid)' if tuned['schedules'][name]['eta0_at_grid_edge'] else ''
    print(
      f'tuned {name:12s} eta0={eta0:<8g} knob={knob}: validation accuracy '
      f'{accuracy[best]:.4f}{edge}  [{len(members)} runs, {result.seconds:.0f}s]',
      flush=True,
    )
  return tuned


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The runs of every schedule on the same seeds."""

  config: configs.Config
  seeds: list[int]
  settings: dict[str, configs.Config]  # per schedule: its resolved config (eta0, knob)
  results: dict[str, sweep.SweepResult]


def compare(
  config: configs.Config, names: list[str], seeds: list[int], dataset: data_lib.Dataset, tuned
) -> Comparison:
  settings, results = {}, {}
  for name in names:
    settings[name] = train.resolve(dataclasses.replace(config, schedule=name), tuned)
    eta0, knob = settings[name].lr, settings[name].knob
    members = [sweep.Member(eta0, knob, seed) for seed in seeds]  # type: ignore[arg-type]
    results[name] = result = sweep.train_many(settings[name], members, dataset)
    print(
      f'{name:14s} test accuracy {mean_std(result.test_accuracy[:, -1])}  '
      f'train loss {mean_std(result.train_loss[:, -1])}  [{result.seconds:.0f}s]',
      flush=True,
    )
  return Comparison(config, seeds, settings, results)


def mean_std(values: np.ndarray, digits: int = 4) -> str:
  spread = values.std(ddof=1) if len(values) > 1 else 0.0
  return f'{values.mean():.{digits}f} ± {spread:.{digits}f}'


def paired_interval(
  a: np.ndarray, b: np.ndarray, level: float = 0.95
) -> tuple[float, float, float]:
  """Mean of a - b over paired seeds and the t-interval of that mean."""
  diff = np.asarray(a, float) - np.asarray(b, float)
  if len(diff) < 2:
    return float(diff.mean()), float('nan'), float('nan')
  half = stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
  return float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half)


def table(comparison: Comparison) -> str:
  """The results as markdown: settings, mean ± std over seeds, paired differences."""
  config, reference = comparison.config, comparison.results.get(schedules.REFERENCE)
  lines = [
    f'{config.dataset}, {comparison.settings[next(iter(comparison.settings))].model}, '
    f'{config.epochs} epochs of batch {config.batch_size}, momentum {config.momentum}, '
    f'weight decay {config.weight_decay}, {len(comparison.seeds)} seeds; mean ± std of the '
    'final epoch; the last column is the paired difference of test accuracy, step_decay minus '
    'the row, with its 95% t-interval (positive: step decay is better).',
    '',
    '| schedule | eta0 | knob | final train loss | test accuracy | step_decay - this [95% CI] |',
    '|---|---:|---|---:|---:|---:|',
  ]
  for name, result in comparison.results.items():
    setting = comparison.settings[name]
    spec = schedules.SCHEDULES[name]
    knob = f'{spec.knob}={setting.knob:g}' if spec.knob else '-'
    accuracy = result.test_accuracy[:, -1]
    paired = '-'
    if reference is not None and name != schedules.REFERENCE:
      mean, low, high = paired_interval(reference.test_accuracy[:, -1], accuracy)
      paired = f'{mean:+.4f} [{low:+.4f}, {high:+.4f}]'
    lines.append(
      f'| {name} | {setting.lr:g} | {knob} | {mean_std(result.train_loss[:, -1])} '
      f'| {mean_std(accuracy)} | {paired} |'
    )
  return '\n'.join(lines) + '\n'


def write_csvs(out: Path, comparison: Comparison) -> None:
  """results.csv: a row per schedule and seed, with its last step size; history.csv: per epoch."""
  final, history = [], []
  for name, result in comparison.results.items():
    setting = comparison.settings[name]
    for i, seed in enumerate(comparison.seeds):
      common = {'schedule': name, 'seed': seed, 'eta0': setting.lr, 'knob': setting.knob}
      final.append(
        {
          **common,
          'final_train_loss': result.train_loss[i, -1],
          'test_loss': result.test_loss[i, -1],
          'test_accuracy': result.test_accuracy[i, -1],
          'final_learning_rate': result.learning_rates[i, -1],
        }
      )
      history += [
        {
          **common,
          'epoch': e + 1,
          'train_loss': result.train_loss[i, e],
          'test_loss': result.test_loss[i, e],
          'test_accuracy': result.test_accuracy[i, e],
        }
        for e in range(result.train_loss.shape[1])
      ]
  write_csv(out / 'results.csv', final)
  write_csv(out / 'history.csv', history)


def write_csv(path: Path, rows: list[dict]) -> None:
  """Rows with the same keys, under a header of those keys."""
  with path.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def plot(out: Path, comparison: Comparison) -> None:
  """Step size, training loss and test error, one panel per family of schedules."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  families: dict[str, list[str]] = {}
  for name in comparison.results:
    families.setdefault(schedules.SCHEDULES[name].family, []).append(name)
  for family in families.values():  # every panel shows the reference, in black
    if schedules.REFERENCE in comparison.results and schedules.REFERENCE not in family:
      family.insert(0, schedules.REFERENCE)
  figures = {
    'learning_rate': ('step size (seed 0)', 'update', lambda r: r.learning_rates[:1]),
    'train_loss': ('training loss (whole training set)', 'epoch', lambda r: r.train_loss),
    'test_error': ('test error', 'epoch', lambda r: 1 - r.test_accuracy),
  }
  for key, (ylabel, xlabel, curves_of) in figures.items():
    fig, axes = plt.subplots(
      1, len(families), figsize=(6 * len(families), 4.2), sharey=True, squeeze=False
    )
    for ax, (family, names) in zip(axes[0], families.items(), strict=True):
      for name in names:
        curves = curves_of(comparison.results[name])
        x = np.arange(1, curves.shape[1] + 1)
        style = {'color': 'black', 'lw': 2} if name == schedules.REFERENCE else {'lw': 1.3}
        (line,) = ax.plot(x, curves.mean(axis=0), label=name, **style)
        if len(curves) > 1:  # min to max: stays positive on the log axis
          low, high = curves.min(axis=0), curves.max(axis=0)
          ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12, lw=0)
      ax.set(yscale='log', xlabel=xlabel, title=f'{family} schedules')
      ax.grid(alpha=0.3, which='both')
      ax.legend(fontsize=8)
    axes[0, 0].set_ylabel(ylabel + ('' if key == 'learning_rate' else ', mean (band: min-max)'))
    if key == 'test_error':
      finals = np.concatenate([1 - r.test_accuracy[:, -1] for r in comparison.results.values()])
      axes[0, 0].set_ylim(finals.min() * 0.8, min(1.0, finals.max() * 4))
    fig.tight_layout()
    fig.savefig(out / f'{key}.png', dpi=110)
    plt.close(fig)


def report(out: Path, comparison: Comparison, started: float) -> str:
  out.mkdir(parents=True, exist_ok=True)
  markdown = table(comparison)
  (out / 'results.md').write_text(markdown)
  write_csvs(out, comparison)
  plot(out, comparison)
  print(markdown)
  print(
    f'wrote {out}/results.csv, history.csv, results.md and 3 plots; '
    f'{time.perf_counter() - started:.0f}s in all'
  )
  return markdown


def difference(tuned: dict, committed: dict | None) -> str:
  """Whether a tuning run chose the committed settings, and where it did not."""
  if committed is None:
    return 'no committed settings to compare with'
  chosen, kept = tuned['schedules'], committed.get('schedules', {})
  differ = [
    f'{name}: (eta0, knob) {(kept[name]["eta0"], kept[name]["knob"])} -> {(s["eta0"], s["knob"])}'
    for name, s in chosen.items()
    if name in kept and (s['eta0'], s['knob']) != (kept[name]['eta0'], kept[name]['knob'])
  ]
  if not differ:
    return f'the same eta0 and knob as the committed settings for all {len(chosen)} schedules'
  return 'differs from the committed settings: ' + '; '.join(differ)


def setting_warnings(config: configs.Config, tuned: dict | None) -> list[str]:
  """Lines that say where a run's settings differ from those its eta0s were tuned for."""
  if tuned is None:
    return []
  differ = configs.differing_fields(tuned['config'], config)
  differ = [d for d in differ if d.split()[0] not in ('schedule', 'lr', 'knob', 'seed')]
  return (
    [f'note: eta0 and knobs were tuned with other settings: {", ".join(differ)}'] if differ else []
  )


def save_tuned(path: Path, tuned: dict) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(tuned, indent=1) + '\n')
  print(f'wrote {path}')

"""Compare step sizes under the same budget: several schedules x seeds, one table, three plots.

  python examples/compare_schedules.py --dataset digits --seeds 3 --out examples/results/digits
  python examples/compare_schedules.py --dataset digits --tune   # rewrites examples/tuned/

Each schedule runs with its tuned eta0 and decay knob from examples/tuned/DATASET.json
(made by --tune; see TUNING below). Writes OUT/results.csv (one row per schedule x seed
x epoch), OUT/results.md (the table), and OUT/learning_rate.png, OUT/train_loss.png,
OUT/test_accuracy.png.

TUNING: for each schedule, every eta0 in ETA0_GRID times every value of its knob grid
(examples/schedules.py) is trained once (seed TUNING_SEED) on 80% of the training set and
scored by its final loss on the other 20%; the test set is never looked at. The best
configuration per schedule is saved with all the scores. ``auto`` is not tuned: it runs
with step_decay's eta0 and its default decay factor, to show what it does without a horizon.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from examples import data
from examples import models
from examples import schedules
from examples import training

ETA0_GRID = (0.1, 0.3, 1.0, 3.0)
TUNING_SEED = 1000
TUNED_DIR = Path(__file__).resolve().parent / 'tuned'
DEFAULT_SCHEDULES = ','.join(schedules.SCHEDULES)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--dataset', choices=data.DATASETS, default='digits')
  p.add_argument('--data-dir', default='data')
  p.add_argument('--model', choices=models.MODELS, default='mlp')
  p.add_argument('--schedules', default=DEFAULT_SCHEDULES, help='comma-separated names')
  p.add_argument('--seeds', type=int, default=3)
  p.add_argument('--epochs', type=int, default=30)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--momentum', type=float, default=0.0)
  p.add_argument('--weight-decay', type=float, default=1e-4)
  p.add_argument(
    '--lr', type=float, help='use this eta0 for every schedule instead of the tuned one'
  )
  p.add_argument(
    '--tuned', type=Path, help='tuned hyperparameters (default examples/tuned/DATASET.json)'
  )
  p.add_argument('--tune', action='store_true', help='run the tuning protocol and write --tuned')
  p.add_argument('--out', type=Path, default=Path('runs/compare'))
  return p


def run_config(args, schedule: str, lr: float, knob: float | None, seed: int) -> training.RunConfig:
  return training.RunConfig(
    dataset=args.dataset, data_dir=args.data_dir, model=args.model, schedule=schedule, lr=lr,
    knob=knob, momentum=args.momentum, weight_decay=args.weight_decay, epochs=args.epochs,
    batch_size=args.batch_size, seed=seed, progress=False,
  )  # fmt: skip


def tune(args, names: list[str], dataset: data.Dataset, path: Path) -> dict:
  validation = dataset.validation_split(0.2, seed=TUNING_SEED)
  tuned: dict = {
    'protocol': __doc__.split('TUNING: ')[1].split('\n\n')[0].replace('\n', ' '),
    'eta0_grid': ETA0_GRID,
    'epochs': args.epochs,
    'batch_size': args.batch_size,
    'momentum': args.momentum,
    'weight_decay': args.weight_decay,
    'model': args.model,
    'schedules': {},
  }
  for name in names:
    if name == 'auto':
      continue
    spec = schedules.SCHEDULES[name]
    scores = []
    for eta0, knob in itertools.product(ETA0_GRID, spec.knob_grid or (None,)):
      result = training.train(run_config(args, name, eta0, knob, TUNING_SEED), validation)
      final = result.history[-1]
      loss = final['test_loss'] if np.isfinite(final['test_loss']) else float('inf')
      scores.append({'eta0': eta0, 'knob': knob, 'validation_loss': loss,
                     'validation_accuracy': final['test_accuracy']})  # fmt: skip
      print(f'tune {name:14s} eta0={eta0:<5} knob={knob}: val loss {loss:.4f}', flush=True)
    best = min(scores, key=lambda s: s['validation_loss'])
    tuned['schedules'][name] = {'eta0': best['eta0'], 'knob': best['knob'], 'scores': scores}
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(tuned, indent=1))
  return tuned


def hyperparameters(args, name: str, tuned: dict | None) -> tuple[float, float | None]:
  if args.lr is not None:
    return args.lr, None
  table = (tuned or {}).get('schedules', {})
  source = 'step_decay' if name == 'auto' else name
  if source not in table:
    raise SystemExit(f'no tuned eta0 for {source!r}: pass --lr, or run with --tune first.')
  knob = None if name == 'auto' else table[source]['knob']
  return table[source]['eta0'], knob


def mean_std(values: list[float]) -> str:
  values_array = np.asarray(values)
  spread = values_array.std(ddof=1) if len(values_array) > 1 else 0.0
  return f'{values_array.mean():.4f} ± {spread:.4f}'


def write_csv(path: Path, rows: list[dict]) -> None:
  with path.open('w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)


def plot(out: Path, runs: dict[str, list[training.RunResult]]) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  palette = plt.get_cmap('tab20').colors
  colors = dict(zip(runs, palette[0::2] + palette[1::2], strict=False))

  def style(name):  # step decay stands out; every schedule gets its own colour
    return {'color': 'black', 'lw': 2.2} if name == 'step_decay' else {'color': colors[name]}

  fig, ax = plt.subplots(figsize=(8, 5))
  for name, results in runs.items():
    rates = results[0].learning_rates
    ax.plot(np.arange(len(rates)), rates, label=name, **style(name))
  ax.set(yscale='log', xlabel='step', ylabel='learning rate', title='Step size (seed 0)')
  ax.legend(fontsize=8, ncol=2)
  fig.savefig(out / 'learning_rate.png', dpi=120, bbox_inches='tight')
  plt.close(fig)
  for key, label, log in [
    ('train_loss', 'train loss', True),
    ('test_accuracy', 'test accuracy', False),
  ]:
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, results in runs.items():
      curves = np.array([[row[key] for row in r.history] for r in results])
      epochs = np.arange(1, curves.shape[1] + 1)
      (line,) = ax.plot(epochs, curves.mean(axis=0), label=name, **style(name))
      low, high = curves.min(axis=0), curves.max(axis=0)
      ax.fill_between(epochs, low, high, color=line.get_color(), alpha=0.15)
    ax.set(xlabel='epoch', ylabel=label, title=f'{label} (mean, band: min-max over seeds)')
    if log:
      ax.set_yscale('log')
    else:
      ax.set_ylim(max(0.0, ax.get_ylim()[0]), 1.0)
    ax.legend(fontsize=8, ncol=2)
    fig.savefig(out / f'{key}.png', dpi=120, bbox_inches='tight')
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, list[training.RunResult]]:
  args = parser().parse_args(argv)
  names = [n for n in args.schedules.split(',') if n]
  unknown = sorted(set(names) - set(schedules.SCHEDULES))
  if unknown:
    raise SystemExit(f'unknown schedules {unknown}; choose from {sorted(schedules.SCHEDULES)}.')
  dataset = data.load_dataset(args.dataset, args.data_dir)
  tuned_path = args.tuned or TUNED_DIR / f'{args.dataset}.json'
  if args.tune:
    tuned = tune(args, names, dataset, tuned_path)
  else:
    tuned = json.loads(tuned_path.read_text()) if tuned_path.exists() else None

  started = time.perf_counter()
  runs: dict[str, list[training.RunResult]] = {}
  rows, table = [], []
  for name in names:
    eta0, knob = hyperparameters(args, name, tuned)
    runs[name] = []
    for seed in range(args.seeds):
      result = training.train(run_config(args, name, eta0, knob, seed), dataset)
      runs[name].append(result)
      rows += [
        {'schedule': name, 'seed': seed, 'eta0': eta0, 'knob': knob, **row}
        for row in result.history
      ]
    finals = [r.history[-1] for r in runs[name]]
    table.append(
      {
        'schedule': name,
        'eta0': eta0,
        'knob': '-' if knob is None else f'{schedules.SCHEDULES[name].knob}={knob:g}',
        'train_loss': mean_std([f['train_loss'] for f in finals]),
        'test_accuracy': mean_std([f['test_accuracy'] for f in finals]),
      }
    )
    summary = table[-1]
    print(
      f'{name:14s} eta0={eta0:<5} {summary["knob"]:22s} train loss {summary["train_loss"]}  '
      f'test acc {summary["test_accuracy"]}  ({time.perf_counter() - started:.0f}s)',
      flush=True,
    )

  args.out.mkdir(parents=True, exist_ok=True)
  write_csv(args.out / 'results.csv', rows)
  header = (
    f'{args.dataset}, {args.model}, {args.epochs} epochs of batch {args.batch_size}, '
    f'momentum {args.momentum}, weight decay {args.weight_decay}, {args.seeds} seeds '
    '(mean ± std of the final epoch)'
  )
  lines = [
    header,
    '',
    '| schedule | eta0 | knob | final train loss | test accuracy |',
    '|---|---:|---|---:|---:|',
  ]
  lines += [
    f'| {t["schedule"]} | {t["eta0"]:g} | {t["knob"]} | {t["train_loss"]} | {t["test_accuracy"]} |'
    for t in table
  ]
  (args.out / 'results.md').write_text('\n'.join(lines) + '\n')
  plot(args.out, runs)
  print('\n'.join(lines))
  print(
    f'wrote {args.out}/results.csv, results.md and 3 plots in {time.perf_counter() - started:.0f}s'
  )
  return runs


if __name__ == '__main__':
  main()

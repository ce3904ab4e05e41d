"""The language model's step sizes compared: the tuning protocol, the comparison and its report.

Scores are bits per byte (the cross-entropy in base 2) on fixed samples of
windows; lower is better. The paired differences of the table are
``this - step_decay``, so positive means that step decay is better.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from examples import compare as mnist_compare
from examples import sweep
from examples.lm import configs
from examples.lm import data as lm_data
from examples.lm import optim
from examples.lm import train

ETA0_GRID = tuple(0.001 * 2**k for k in range(5))  # 0.001 ... 0.016
TUNING_SEEDS = (1000, 1001)
TUNING_PROTOCOL = (
  f'the training files are split again by the hash of their path (bucket '
  f'{lm_data.TUNING_VALIDATION.start}-{lm_data.TUNING_VALIDATION.stop - 1} of 100 held out); the '
  'validation files are never used. For each schedule, every eta0 of ETA0_GRID (factors of 2) '
  'times every value of its knob grid is trained on '
  f'{len(TUNING_SEEDS)} seeds ({TUNING_SEEDS[0]}-{TUNING_SEEDS[-1]}), and the setting with the '
  'lowest mean final bits per byte on the held-out files is kept.'
)


def _knob_groups(name: str) -> tuple[float | None, ...]:
  return optim.SCHEDULES[name].knob_grid or (None,)


def tune(config: configs.Config, names: list[str], corpus: lm_data.Corpus) -> dict:
  """The tuning protocol (``TUNING_PROTOCOL``) on a tuning split; returns every score."""
  runs = train.Runs(config, corpus)
  tuned: dict = {
    'protocol': TUNING_PROTOCOL,
    'eta0_grid': ETA0_GRID,
    'seeds': TUNING_SEEDS,
    'config': dataclasses.asdict(config),
    'corpus': corpus.info,
    'schedules': {},
  }
  for name in names:
    scores = []
    for knob in _knob_groups(name):
      members = [sweep.Member(e, knob, s) for e in ETA0_GRID for s in TUNING_SEEDS]
      curves = runs.train(dataclasses.replace(config, schedule=name, knob=knob), members)
      bits = curves.validation_bpb[:, -1].reshape(len(ETA0_GRID), len(TUNING_SEEDS)).mean(axis=1)
      bits = np.where(np.isfinite(bits), bits, np.inf)
      scores += [
        {'eta0': e, 'knob': knob, 'validation_bpb': float(b)}
        for e, b in zip(ETA0_GRID, bits, strict=True)
      ]
    best = min(scores, key=lambda s: s['validation_bpb'])
    edge = best['eta0'] in (ETA0_GRID[0], ETA0_GRID[-1])
    tuned['schedules'][name] = {**best, 'eta0_at_grid_edge': edge, 'scores': scores}
    print(
      f'tuned {name:12s} eta0={best["eta0"]:<8g} knob={best["knob"]}: validation '
      f'{best["validation_bpb"]:.4f} bits/byte{" (at the edge of the grid)" if edge else ""}',
      flush=True,
    )
  return tuned


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The runs of every schedule on the same seeds."""

  config: configs.Config
  seeds: list[int]
  settings: dict[str, configs.Config]  # per schedule: its resolved config (eta0, knob)
  results: dict[str, train.Curves]
  corpus: dict


def compare(
  config: configs.Config, names: list[str], seeds: list[int], corpus: lm_data.Corpus, tuned
) -> Comparison:
  settings = {n: train.resolve(dataclasses.replace(config, schedule=n), tuned) for n in names}
  runs, results = train.Runs(config, corpus), {}
  for name, setting in settings.items():
    members = [sweep.Member(setting.lr, setting.knob, seed) for seed in seeds]  # type: ignore[arg-type]
    results[name] = curves = runs.train(setting, members)
    print(
      f'{name:12s} validation {mnist_compare.mean_std(curves.validation_bpb[:, -1])} bits/byte  '
      f'train {mnist_compare.mean_std(curves.train_bpb[:, -1])}  [{curves.seconds:.0f}s]',
      flush=True,
    )
  return Comparison(config, seeds, settings, results, corpus.info)


def source(corpus: dict) -> str:
  """Where the corpus came from, with the Python version that read it."""
  if corpus.get('stdlib'):
    return f'The Python {corpus["python"]} standard library'
  return f'The *.py files of {corpus["directory"]} (Python {corpus["python"]})'


def describe(config: configs.Config, corpus: dict, seeds: int) -> str:
  """The setting in one sentence: model, budget, optimizer, corpus and Python version."""
  return (
    f'{source(corpus)}: {corpus["train_files"]:,} training files '
    f'({corpus["train_bytes"]:,} bytes), {corpus["validation_files"]:,} validation files '
    f'({corpus["validation_bytes"]:,} bytes). A byte-level transformer ({config.layers} blocks, '
    f'width {config.width}, {config.heads} heads, context {config.context}, {config.dtype}), '
    f'AdamW (weight decay {config.weight_decay} on the weight matrices, clipping at '
    f'{config.clip_norm}), {config.steps:,} updates of {config.batch_size} sequences, '
    f'{seeds} seeds; bits per byte on {lm_data.EVALUATION_WINDOWS} fixed windows of each split'
  )


def table(comparison: Comparison) -> str:
  """The results as markdown: settings, mean ± std over seeds, paired differences."""
  reference = comparison.results.get(optim.REFERENCE)
  lines = [
    describe(comparison.config, comparison.corpus, len(comparison.seeds))
    + '; mean ± std of the final evaluation; the last column is the paired difference of '
    'validation bits per byte, the row minus step_decay, with its 95% t-interval (positive: step '
    'decay is better).',
    '',
    '| schedule | eta0 | knob | final train bits/byte | validation bits/byte '
    '| this - step_decay [95% CI] |',
    '|---|---:|---|---:|---:|---:|',
  ]
  for name, curves in comparison.results.items():
    setting, spec = comparison.settings[name], optim.SCHEDULES[name]
    knob = f'{spec.knob}={setting.knob:g}' if spec.knob else '-'
    bits = curves.validation_bpb[:, -1]
    paired = '-'
    if reference is not None and name != optim.REFERENCE:
      mean, low, high = mnist_compare.paired_interval(bits, reference.validation_bpb[:, -1])
      paired = f'{mean:+.4f} [{low:+.4f}, {high:+.4f}]'
    lines.append(
      f'| {name} | {setting.lr:g} | {knob} | {mnist_compare.mean_std(curves.train_bpb[:, -1])} '
      f'| {mnist_compare.mean_std(bits)} | {paired} |'
    )
  return '\n'.join(lines) + '\n'


def write_csvs(out: Path, comparison: Comparison) -> None:
  """results.csv: one row per schedule and seed; history.csv: one per evaluation as well."""
  final, history = [], []
  for name, curves in comparison.results.items():
    setting = comparison.settings[name]
    for i, seed in enumerate(comparison.seeds):
      common = {'schedule': name, 'seed': seed, 'eta0': setting.lr, 'knob': setting.knob}
      final.append(
        {
          **common,
          'final_train_loss': curves.train_bpb[i, -1],
          'validation_bpb': curves.validation_bpb[i, -1],
        }
      )
      history += [
        {
          **common,
          'step': step,
          'train_bpb': curves.train_bpb[i, e],
          'validation_bpb': curves.validation_bpb[i, e],
        }
        for e, step in enumerate(curves.steps)
      ]
  mnist_compare.write_csv(out / 'results.csv', final)
  mnist_compare.write_csv(out / 'history.csv', history)


def plot(out: Path, comparison: Comparison) -> None:
  """The step size of seed 0 and the validation bits per byte (mean, band min-max) per update."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (rates, bits) = plt.subplots(1, 2, figsize=(12, 4.2))
  for name, curves in comparison.results.items():
    style = {'color': 'black', 'lw': 2} if name == optim.REFERENCE else {'lw': 1.3}
    steps = np.arange(1, curves.learning_rates.shape[1] + 1)
    rates.plot(steps, curves.learning_rates[0], label=name, **style)
    (line,) = bits.plot(curves.steps, curves.validation_bpb.mean(axis=0), 'o-', label=name, **style)
    low, high = curves.validation_bpb.min(axis=0), curves.validation_bpb.max(axis=0)
    bits.fill_between(curves.steps, low, high, color=line.get_color(), alpha=0.12, lw=0)
  rates.set(xlabel='update', ylabel='step size (seed 0)', yscale='log')
  bits.set(xlabel='update', ylabel='validation bits per byte, mean (band: min-max)')
  for ax in (rates, bits):
    ax.grid(alpha=0.3, which='both')
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out / 'validation_bpb.png', dpi=110)
  plt.close(fig)


def report(out: Path, comparison: Comparison, started: float) -> str:
  out.mkdir(parents=True, exist_ok=True)
  markdown = table(comparison)
  (out / 'results.md').write_text(markdown)
  (out / 'corpus.json').write_text(json.dumps(comparison.corpus, indent=1) + '\n')
  write_csvs(out, comparison)
  plot(out, comparison)
  print(markdown)
  print(
    f'wrote {out}/results.csv, history.csv, results.md, corpus.json and validation_bpb.png; '
    f'{time.perf_counter() - started:.0f}s in all'
  )
  return markdown

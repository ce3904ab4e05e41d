"""Cooldowns branched from one constant run against cosine runs of the same lengths.

Hägele et al. (2024) train one run at a constant step size and branch short
cooldowns from its checkpoints, one per budget, instead of training a run per
budget. Here: a warmup-stable run (``scale_by_cooldown(wsd_schedule(eta0,
warmup_steps=W))``) is saved at 25, 50, 75 and 100% of its ``stable_steps``;
from each saved state, ``start_cooldown`` anneals the step to 0 (1-sqrt) over
a quarter of the steps done so far, so the cooldown is 20% of the branch. Each
branch is compared with a separate warmup-cosine run of the same length, over
the same seeds and batch order. Both use the tuned eta0 of ``wsd`` and
``cosine`` (examples/tuned/).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np
import optax

import optax_stepdecay as osd
from examples import compare
from examples import configs
from examples import data as data_lib
from examples import schedules
from examples import sweep
from examples import train
from examples.schedules import BRANCHED
from examples.schedules import SEPARATE

FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclasses.dataclass(frozen=True)
class Branches:
  lengths: list[int]  # updates of each branch (and of its cosine run)
  checkpoints: list[int]  # where each cooldown starts
  final: dict[str, dict[str, np.ndarray]]  # method -> metric -> [branch, seed]
  compute: dict[str, int]  # method -> updates spent in all
  seconds: float


def run(
  config: configs.Config,
  dataset: data_lib.Dataset,
  seeds: list[int],
  stable_steps: int,
  tuned: dict | None,
) -> Branches:
  started = time.perf_counter()
  eta0 = {
    m: train.resolve(dataclasses.replace(config, schedule=m), tuned).lr
    for m in (BRANCHED, SEPARATE)
  }
  warmup = max(1, stable_steps // 20)
  checkpoints = [round(f * stable_steps) for f in FRACTIONS]
  lengths = [c + c // 4 for c in checkpoints]
  network, params, rest = sweep.Network.create(config, dataset, seeds)
  stream = np.stack(
    [
      data_lib.batch_stream(len(dataset.x_train), config.batch_size, seed, max(lengths))
      for seed in seeds
    ]
  )
  data = (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test)

  sgd = schedules.Sgd(config.momentum, config.weight_decay).around

  @jax.jit
  def evaluate(carry, data):
    def one(params, rest):
      train_loss, _ = network.metrics(params, rest, *data[:2])
      _, accuracy = network.metrics(params, rest, *data[2:])
      return train_loss, accuracy

    return jax.vmap(one)(carry[0], carry[1])

  @functools.partial(jax.jit, static_argnames='tx')  # one compilation per tx and segment shape
  def train_seeds(carry, batches, train_data, tx):
    return jax.vmap(lambda c, b: network.train(tx, c, b, *train_data)[0])(carry, batches)

  def train_segment(tx, carry, start, stop):
    return train_seeds(carry, stream[:, start:stop], data[:2], tx=tx)

  wsd = sgd(osd.scale_by_cooldown(osd.wsd_schedule(eta0[BRANCHED], warmup_steps=warmup)))
  carry = (params, rest, jax.vmap(functools.partial(network.init, wsd))(params))
  final: dict[str, dict[str, list]] = {m: {'train_loss': [], 'test_accuracy': []} for m in eta0}
  done = 0
  for checkpoint, length in zip(checkpoints, lengths, strict=True):
    carry = train_segment(wsd, carry, done, checkpoint)  # the stable run, saved here
    done = checkpoint
    cooled = jax.vmap(
      lambda s, d=length - checkpoint: osd.start_cooldown(s, decay_steps=d, shape='1-sqrt')
    )
    branch = train_segment(wsd, (*carry[:2], cooled(carry[2])), checkpoint, length)
    for key, value in zip(final[BRANCHED], evaluate(branch, data), strict=True):
      final[BRANCHED][key].append(np.asarray(value))
  for length in lengths:
    cosine = sgd(
      osd.scale_by_tracked_learning_rate(
        optax.warmup_cosine_decay_schedule(0.0, eta0[SEPARATE], warmup, length)
      )
    )
    result = train_segment(
      cosine, (params, rest, jax.vmap(functools.partial(network.init, cosine))(params)), 0, length
    )
    for key, value in zip(final[SEPARATE], evaluate(result, data), strict=True):
      final[SEPARATE][key].append(np.asarray(value))
  cooldowns = sum(length - start for length, start in zip(lengths, checkpoints, strict=True))
  compute = {BRANCHED: stable_steps + cooldowns, SEPARATE: sum(lengths)}
  arrays = {m: {k: np.stack(v) for k, v in metrics.items()} for m, metrics in final.items()}
  return Branches(lengths, checkpoints, arrays, compute, time.perf_counter() - started)


def table(result: Branches, seeds: int) -> str:
  lines = [
    f'Cooldowns (1-sqrt, 20% of each branch) branched from one warmup-stable run against '
    f'warmup-cosine runs of the same lengths, {seeds} seeds, mean ± std; updates spent in all: '
    f'{result.compute[BRANCHED]:,} for the branches, {result.compute[SEPARATE]:,} for the cosine '
    'runs.',
    '',
    '| updates | cooldown from | branched: train loss | cosine: train loss '
    '| branched: test accuracy | cosine: test accuracy |',
    '|---:|---:|---:|---:|---:|---:|',
  ]
  for i, (length, start) in enumerate(zip(result.lengths, result.checkpoints, strict=True)):
    cells = [
      compare.mean_std(result.final[method][key][i])
      for key in ('train_loss', 'test_accuracy')
      for method in (BRANCHED, SEPARATE)
    ]
    lines.append(f'| {length:,} | {start:,} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot_over_lengths(ax, lengths, values: np.ndarray, label: str) -> None:
  """Final values (runs x seeds) against the runs' lengths: mean, with the std as error bars."""
  ax.errorbar(
    lengths, values.mean(axis=1), yerr=values.std(axis=1), marker='o', capsize=3, label=label
  )


def plot(out: Path, result: Branches) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  labels = {BRANCHED: 'cooldown branched from one run', SEPARATE: 'separate cosine run'}
  for ax, key, label in zip(
    axes, ('train_loss', 'test_accuracy'), ('training loss', 'test error'), strict=True
  ):
    for method, text in labels.items():
      values = result.final[method][key]
      plot_over_lengths(ax, result.lengths, 1 - values if key == 'test_accuracy' else values, text)
    ax.set(
      xlabel='updates of the run', ylabel=f'final {label} (mean ± std over seeds)', yscale='log'
    )
    ax.grid(alpha=0.3, which='both')
  axes[0].legend()
  fig.tight_layout()
  fig.savefig(out / 'branches.png', dpi=110)
  plt.close(fig)


def report(out: Path, result: Branches, seeds: int) -> None:
  out.mkdir(parents=True, exist_ok=True)
  markdown = table(result, seeds)
  (out / 'branches.md').write_text(markdown)
  plot(out, result)
  print(markdown)
  print(f'wrote {out}/branches.md and branches.png; {result.seconds:.0f}s in all')

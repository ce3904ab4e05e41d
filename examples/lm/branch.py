"""Cooldowns branched from the orbax checkpoints of one run, against cosine runs of equal lengths.

As ``examples/branch.py`` for MNIST-1D, after Hägele et al. (2024), with the
checkpoints on disk: one warmup-stable run (``scale_by_cooldown(wsd_schedule(eta0,
warmup_steps=W))``, AdamW, the tuned eta0 of ``wsd``) of 80% of ``--steps``
updates is saved with orbax at 25, 50, 75 and 100% of its length. Each
checkpoint is restored, ``osd.start_cooldown`` anneals the step to 0 (1-sqrt)
over a quarter of the updates done so far, and the branch trains on, so the
branches are 25, 50, 75 and 100% of ``--steps`` long with their last 20%
cooling down. Each is compared with a separate warmup-cosine run of the same
length (the tuned eta0 of ``cosine``, the same W), over the same seeds and
batch order.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

import optax_stepdecay as osd
from examples import branch as mnist_branch
from examples import compare as mnist_compare
from examples.lm import compare
from examples.lm import configs
from examples.lm import data as lm_data
from examples.lm import optim
from examples.lm import train
from examples.lm.optim import BRANCHED
from examples.lm.optim import SEPARATE

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
METRICS = ('train_bpb', 'validation_bpb')


@dataclasses.dataclass(frozen=True)
class Branches:
  lengths: list[int]  # updates of each branch (and of its cosine run)
  checkpoints: list[int]  # where each cooldown starts
  final: dict[str, dict[str, np.ndarray]]  # method -> metric -> [branch, seed]
  learning_rates: dict[str, list[np.ndarray]]  # method -> per branch, [seeds, updates]
  compute: dict[str, int]  # method -> updates spent in all
  seconds: float


def _train(runs: train.Runs, recipe, carry, eta0s, seeds, start: int, stop: int):
  """Trains the carry from update ``start`` to ``stop`` in chunks; returns it and the step sizes."""
  chunk, rates = runs.config.steps // configs.CHUNKS, []
  for begin in range(start, stop, chunk):
    batches = runs.batches(seeds, begin, begin + chunk)
    carry, chunk_rates = runs.advance(recipe, carry, eta0s, batches)
    rates.append(np.asarray(chunk_rates))
  return carry, np.concatenate(rates, axis=1)


def run(
  config: configs.Config,
  corpus: lm_data.Corpus,
  seeds: list[int],
  tuned: dict | None,
  checkpoint_dir: Path | None = None,
) -> Branches:
  """The branch demo; its checkpoints go to ``checkpoint_dir`` (default: a temporary folder)."""
  started = time.perf_counter()
  config = dataclasses.replace(config, lr=None, knob=None)  # each method's tuned eta0
  eta0 = {m: train.resolve(dataclasses.replace(config, schedule=m), tuned).lr for m in METHODS}
  config = train.resolve(dataclasses.replace(config, schedule=BRANCHED), tuned)
  stable = config.steps * 4 // 5
  checkpoints = [round(f * stable) for f in FRACTIONS]
  lengths = [c + c // 4 for c in checkpoints]
  runs = train.Runs(config, corpus)
  final: dict = {m: {k: [] for k in METRICS} for m in METHODS}
  rates: dict = {m: [] for m in METHODS}
  with tempfile.TemporaryDirectory() as scratch:
    directory = Path(checkpoint_dir or scratch).absolute()
    stable_run = _stable_run(runs, config, eta0[BRANCHED], seeds, checkpoints, directory)
    for checkpoint, length in zip(checkpoints, lengths, strict=True):
      carry, branch_rates = stable_run.branch(checkpoint, length)
      _record(final[BRANCHED], runs.evaluate(carry))
      rates[BRANCHED].append(branch_rates)
  for length in lengths:
    recipe = optim.Recipe.of(dataclasses.replace(config, schedule=SEPARATE), total_steps=length)
    eta0s = runs.eta0s([eta0[SEPARATE]] * len(seeds))
    carry = runs.init(recipe, [eta0[SEPARATE]] * len(seeds), seeds)
    carry, cosine_rates = _train(runs, recipe, carry, eta0s, seeds, 0, length)
    _record(final[SEPARATE], runs.evaluate(carry))
    rates[SEPARATE].append(cosine_rates)
  cooldowns = sum(n - c for n, c in zip(lengths, checkpoints, strict=True))
  compute = {BRANCHED: stable + cooldowns, SEPARATE: sum(lengths)}
  arrays = {m: {k: np.stack(v) for k, v in metrics.items()} for m, metrics in final.items()}
  return Branches(lengths, checkpoints, arrays, rates, compute, time.perf_counter() - started)


METHODS = (BRANCHED, SEPARATE)


def _record(final: dict[str, list], bits: dict[str, np.ndarray]) -> None:
  for split, values in bits.items():
    final[f'{split}_bpb'].append(values)


@dataclasses.dataclass
class _StableRun:
  """The warmup-stable run's checkpoints, and the branches that start from them."""

  runs: train.Runs
  recipe: optim.Recipe
  eta0s: jax.Array
  seeds: list[int]
  manager: ocp.CheckpointManager
  abstract: object  # the carry's shapes and dtypes, to restore into
  rates: np.ndarray  # [seeds, stable updates]

  def restore(self, step: int):
    return self.manager.restore(step, args=ocp.args.StandardRestore(self.abstract))

  def branch(self, checkpoint: int, length: int):
    """Restores the checkpoint, starts a cooldown of length - checkpoint updates, trains it."""
    params, rest, opt_state = self.restore(checkpoint)
    cool = jax.vmap(
      lambda s: osd.start_cooldown(s, decay_steps=length - checkpoint, shape='1-sqrt')
    )
    carry = (params, rest, cool(opt_state))
    carry, cooldown = _train(
      self.runs, self.recipe, carry, self.eta0s, self.seeds, checkpoint, length
    )
    return carry, np.concatenate([self.rates[:, :checkpoint], cooldown], axis=1)


def _stable_run(runs, config, eta0: float, seeds, checkpoints: list[int], directory: Path):
  """Trains the warmup-stable run, saving it with orbax at each checkpoint."""
  recipe = optim.Recipe.of(dataclasses.replace(config, schedule=optim.COOLDOWN))
  eta0s = runs.eta0s([eta0] * len(seeds))
  carry = runs.init(recipe, [eta0] * len(seeds), seeds)
  manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(max_to_keep=None))
  done, rates = 0, []
  for checkpoint in checkpoints:
    carry, segment = _train(runs, recipe, carry, eta0s, seeds, done, checkpoint)
    manager.save(checkpoint, args=ocp.args.StandardSave(carry))
    rates.append(segment)
    done = checkpoint
  manager.wait_until_finished()
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, carry)
  return _StableRun(runs, recipe, eta0s, seeds, manager, abstract, np.concatenate(rates, axis=1))


def table(result: Branches, config: configs.Config, corpus: dict, seeds: int) -> str:
  lines = [
    compare.describe(config, corpus, seeds)
    + '. Cooldowns (1-sqrt, 20% of each branch) branched from the orbax checkpoints of one '
    'warmup-stable run against warmup-cosine runs of the same lengths, mean ± std; updates '
    f'spent in all: {result.compute[BRANCHED]:,} for the branches, '
    f'{result.compute[SEPARATE]:,} for the cosine runs.',
    '',
    '| updates | cooldown from | branched: train bits/byte | cosine: train bits/byte '
    '| branched: validation bits/byte | cosine: validation bits/byte '
    '| branched - cosine, validation [95% CI] |',
    '|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for i, (length, start) in enumerate(zip(result.lengths, result.checkpoints, strict=True)):
    cells = [
      mnist_compare.mean_std(result.final[method][key][i]) for key in METRICS for method in METHODS
    ]
    mean, low, high = mnist_compare.paired_interval(
      result.final[BRANCHED]['validation_bpb'][i], result.final[SEPARATE]['validation_bpb'][i]
    )
    paired = f'{mean:+.4f} [{low:+.4f}, {high:+.4f}]'
    lines.append(f'| {length:,} | {start:,} | ' + ' | '.join(cells) + f' | {paired} |')
  return '\n'.join(lines) + '\n'


def plot(out: Path, result: Branches) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (rates, bits) = plt.subplots(1, 2, figsize=(12, 4.2))
  labels = {BRANCHED: 'cooldown branched from a checkpoint', SEPARATE: 'separate cosine run'}
  for method, text in labels.items():
    for i, curve in enumerate(result.learning_rates[method]):
      style = '-' if method == BRANCHED else '--'
      rates.plot(np.arange(1, curve.shape[1] + 1), curve[0], style, label=text if i == 0 else None)
    mnist_branch.plot_over_lengths(
      bits, result.lengths, result.final[method]['validation_bpb'], text
    )
  rates.set(xlabel='update', ylabel='step size (seed 0)')
  bits.set(xlabel='updates of the run', ylabel='final validation bits per byte (mean ± std)')
  for ax in (rates, bits):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(out / 'branches.png', dpi=110)
  plt.close(fig)


def report(out: Path, result: Branches, config: configs.Config, corpus: dict, seeds: int) -> None:
  out.mkdir(parents=True, exist_ok=True)
  markdown = table(result, config, corpus, seeds)
  (out / 'branches.md').write_text(markdown)
  plot(out, result)
  print(markdown)
  print(f'wrote {out}/branches.md and branches.png; {result.seconds:.0f}s in all')

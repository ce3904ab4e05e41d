"""One language-model run with checkpoints, and many runs of one schedule in one program.

:func:`train_and_evaluate` is ``python -m examples.lm train``: ``nnx.Optimizer``,
a progress bar and the MNIST-1D examples' orbax checkpoints (resume, refusal of
other settings, a lock). :class:`Runs` trains many runs at once (``jax.vmap``
over runs, ``lax.scan`` over updates) for tuning, the comparison and the branch
demo. Both take each update with ``examples.train.update``, so a member of a
many-run program reproduces the single run with its seed (tested).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from examples import data as data_lib
from examples import sweep
from examples import train as train_lib
from examples.lm import configs
from examples.lm import data as lm_data
from examples.lm import model as model_lib
from examples.lm import optim

UsageError = train_lib.UsageError


def resolve(config: configs.Config, tuned: dict | None = None) -> configs.Config:
  """Fills eta0 and the knob from the tuned settings; refuses settings that cannot work."""
  problem = configs.check(config)
  if problem:
    raise UsageError(problem)
  lr, knob = config.lr, config.knob
  setting = (tuned or {}).get('schedules', {}).get(config.schedule)
  if lr is None:
    if setting is None:
      raise UsageError(
        f'no tuned eta0 for --schedule {config.schedule} (examples/tuned/lm.json): run '
        '`make lm-tune` and copy runs/tune-lm/lm.json there (train also takes --lr)'
      )
    lr = setting['eta0']
  if knob is None and setting is not None:
    knob = setting['knob']
  resolved = dataclasses.replace(config, lr=lr, knob=optim.knob_value(config.schedule, knob))
  try:  # the library checks the schedule's arguments; say which flags set them
    optim.Recipe.of(resolved)(resolved.lr)
  except ValueError as error:
    raise UsageError(
      f'--schedule {config.schedule} --lr {lr} --knob {resolved.knob}: {error}'
    ) from None
  return resolved


def create_model(config: configs.Config, seed: int) -> model_lib.ByteTransformer:
  return model_lib.ByteTransformer(
    context=config.context,
    width=config.width,
    layers=config.layers,
    heads=config.heads,
    dtype=config.dtype,
    rngs=nnx.Rngs(seed),
  )


def _stack(trees):
  return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@dataclasses.dataclass(frozen=True)
class Curves:
  """Per member and evaluation: bits per byte; per update: the step size."""

  steps: list[int]  # the update after which each evaluation was made
  train_bpb: np.ndarray  # [members, evaluations], on a fixed sample of training windows
  validation_bpb: np.ndarray  # [members, evaluations]
  learning_rates: np.ndarray  # [members, updates]
  seconds: float


class Runs:
  """Runs of one model on one corpus, stacked on axis 0: initialised, trained, evaluated.

  The carry of a group of runs is ``(params, rest, opt_state)``, each stacked over
  the runs; :meth:`advance` trains it for some updates in one compiled program
  (one per recipe and length).
  """

  def __init__(self, config: configs.Config, corpus: lm_data.Corpus):
    self.config = config
    windows = corpus.windows('train', config.context)
    if config.batch_size > len(windows):
      raise UsageError(
        f'--batch-size {config.batch_size} is larger than the {len(windows)} training sequences'
      )
    self.windows = windows
    self.x, self.y = jnp.asarray(windows[:, :-1]), jnp.asarray(windows[:, 1:])
    self.samples = {
      'train': lm_data.evaluation_sample(windows),
      'validation': lm_data.evaluation_sample(corpus.windows('validation', config.context)),
    }
    self.network = sweep.Network(nnx.split(create_model(config, 0), nnx.Param, ...)[0])

  def init(self, recipe: optim.Recipe, eta0s: list[float], seeds: list[int]):
    """The carry of runs with these eta0s and seeds (the initialisation of a single run)."""
    split = [nnx.split(create_model(self.config, s), nnx.Param, ...)[1:] for s in seeds]
    params, rest = _stack([s[0] for s in split]), _stack([s[1] for s in split])
    opt_state = jax.vmap(lambda e, p: self.network.init(recipe(e), p))(self.eta0s(eta0s), params)
    return params, rest, opt_state

  @staticmethod
  def eta0s(eta0s: list[float]) -> jax.Array:
    return jnp.asarray(eta0s, jnp.float32)

  def batches(self, seeds: list[int], start: int, stop: int) -> np.ndarray:
    """The window indices of updates start..stop-1 of each seed's run: [runs, updates, batch]."""
    size = self.config.batch_size
    return np.stack(
      [data_lib.batch_stream(len(self.windows), size, s, stop)[start:stop] for s in seeds]
    )

  def advance(self, recipe: optim.Recipe, carry, eta0s: jax.Array, batches: np.ndarray):
    """Trains every run of the carry on its batches; returns the carry and the step sizes."""
    return _advance(carry, eta0s, batches, self.x, self.y, network=self.network, recipe=recipe)

  def evaluate(self, carry) -> dict[str, np.ndarray]:
    """Bits per byte of every run on the fixed training and validation samples: {split: [runs]}."""
    params, rest = carry[0], carry[1]
    return {
      split: np.asarray(_evaluate(params, rest, jnp.asarray(windows), network=self.network))
      for split, windows in self.samples.items()
    }

  def train(self, config: configs.Config, members: list[sweep.Member]) -> Curves:
    """Trains runs of one schedule and knob (``config``) with each member's eta0 and seed."""
    started = time.perf_counter()
    recipe = optim.Recipe.of(config)
    seeds, eta0s = [m.seed for m in members], self.eta0s([m.eta0 for m in members])
    carry = self.init(recipe, [m.eta0 for m in members], seeds)
    chunk = config.steps // configs.CHUNKS
    every = configs.CHUNKS // configs.EVALUATIONS
    rates, rows, steps = [], [], []
    bar = tqdm(
      total=config.steps, disable=not sys.stderr.isatty(), desc=config.schedule, leave=False
    )
    for index in range(configs.CHUNKS):
      start = index * chunk
      carry, chunk_rates = self.advance(
        recipe, carry, eta0s, self.batches(seeds, start, start + chunk)
      )
      rates.append(chunk_rates)
      bar.update(chunk)
      if (index + 1) % every == 0:
        rows.append(self.evaluate(carry))
        steps.append(start + chunk)
    bar.close()
    return Curves(
      steps,
      np.stack([r['train'] for r in rows], axis=1),
      np.stack([r['validation'] for r in rows], axis=1),
      np.concatenate([np.asarray(r) for r in rates], axis=1),
      time.perf_counter() - started,
    )


@functools.partial(jax.jit, static_argnames=('network', 'recipe'))
def _advance(carry, eta0s, batches, x, y, *, network: sweep.Network, recipe: optim.Recipe):
  """Every run (axis 0 of the carry, eta0s and batches) trained on its batches, in one program."""

  def one(carry, eta0, batches):
    return network.train(recipe(eta0), carry, batches, x, y)

  return jax.vmap(one)(carry, eta0s, batches)


@functools.partial(jax.jit, static_argnames='network')
def _evaluate(params, rest, windows, *, network: sweep.Network):
  """Bits per byte of every run (axis 0 of params and rest) on the windows."""

  def bits(params, rest):
    def loss(window):
      logits, _ = network.logits(params, rest, window[None, :-1], training=False)
      labels = window[None, 1:].astype(jnp.int32)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return jax.lax.map(loss, windows, batch_size=128).mean() / math.log(2)

  return jax.vmap(bits)(params, rest)


@dataclasses.dataclass
class RunResult:
  history: list[dict]  # one row per evaluation
  learning_rates: np.ndarray  # the step size of every update
  model: nnx.Module
  optimizer: nnx.Optimizer
  finished: bool  # False when stopped by stop_after_steps


def train_and_evaluate(
  config: configs.Config, options: train_lib.Options, corpus: lm_data.Corpus
) -> RunResult:
  """Trains one model (``config`` must be resolved); resumes from ``options.checkpoint_dir``."""
  assert config.lr is not None, 'resolve(config) first'
  runs = Runs(config, corpus)
  chunk = config.steps // configs.CHUNKS
  if options.checkpoint_dir and options.checkpoint_every_steps is None:
    options = dataclasses.replace(options, checkpoint_every_steps=5 * chunk)
  model = create_model(config, config.seed)
  optimizer = nnx.Optimizer(model, optim.Recipe.of(config)(config.lr), wrt=nnx.Param)
  checkpoints = train_lib.Checkpoints(options, config)
  logs: dict[str, Any] = {'history': [], 'learning_rates': []}
  try:
    step = checkpoints.restore((model, optimizer), logs)
    if step:
      train_lib.say(f'resuming from step {step} of {config.steps} in {options.checkpoint_dir}')
    step = _loop(config, options, runs, model, optimizer, checkpoints, logs, step)
    checkpoints.save(step, (model, optimizer), logs)
  finally:
    checkpoints.close()
  rates = np.asarray(logs['learning_rates'])
  return RunResult(logs['history'], rates, model, optimizer, step >= config.steps)


def _loop(config, options, runs: Runs, model, optimizer, checkpoints, logs, step: int) -> int:
  """Updates from ``step`` to the end (or ``options.stop_after_steps``); returns the last step."""
  stream = runs.batches([config.seed], 0, config.steps)[0]
  step_fn = nnx.cached_partial(train_lib.train_step, model, optimizer)
  interactive = options.progress and sys.stderr.isatty()
  bar = tqdm(total=config.steps, initial=step, disable=not interactive, leave=False)
  every = config.steps // configs.EVALUATIONS
  pending: list[jax.Array] = []
  started = time.perf_counter()
  while step < config.steps and step != options.stop_after_steps:
    window = runs.windows[stream[step]]
    loss, lr = step_fn(window[:, :-1], window[:, 1:])
    pending.append(lr)
    step += 1
    bar.update()
    if interactive and step % 10 == 0:
      bar.set_postfix(loss=f'{float(loss):.4f}', lr=f'{float(lr):.3g}')
    if step % every == 0 or checkpoints.due(step) or step == options.stop_after_steps:
      logs['learning_rates'] += np.asarray(jax.device_get(pending), float).tolist()
      pending = []
    if step % every == 0:
      _log_evaluation(config, options, runs, model, logs, step, started)
    if checkpoints.due(step) and step < config.steps:
      checkpoints.save(step, (model, optimizer), logs)
  bar.close()
  logs['learning_rates'] += np.asarray(jax.device_get(pending), float).tolist()
  return step


def _log_evaluation(config, options, runs: Runs, model, logs, step: int, started: float) -> None:
  params, rest = nnx.split(model, nnx.Param, ...)[1:]
  bits = runs.evaluate((_stack([params]), _stack([rest])))
  row = {
    'step': step,
    'lr': logs['learning_rates'][-1],
    'train_bpb': float(bits['train'][0]),
    'validation_bpb': float(bits['validation'][0]),
  }
  logs['history'].append(row)
  if options.progress or step == config.steps:  # the final line, always
    train_lib.say(
      f'step {step:6d}/{config.steps}  lr {row["lr"]:.4g}  train {row["train_bpb"]:.4f} '
      f'bits/byte  validation {row["validation_bpb"]:.4f} bits/byte  '
      f'({time.perf_counter() - started:.1f}s)'
    )

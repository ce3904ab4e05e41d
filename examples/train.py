"""One training run: Flax NNX model, optax optimizer, data-parallel jitted steps, checkpoints.

:func:`train_and_evaluate` is the loop of ``python -m examples.main train``;
``compare.py`` trains many runs at once with the same pieces (see ``sweep.py``).
"""

from __future__ import annotations

import copy
import dataclasses
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

import optax_stepdecay as osd
from examples import configs
from examples import data as data_lib
from examples import models
from examples import schedules


class UsageError(ValueError):
  """A setting that cannot work; the command line prints it as one line and exits 2."""


@dataclasses.dataclass(frozen=True)
class Options:
  """How a run is carried out, as opposed to what it computes (never part of a checkpoint)."""

  checkpoint_dir: str | None = None
  checkpoint_every_steps: int | None = None  # default: at the end of every 10th epoch
  checkpoint_every_secs: float | None = None
  stop_after_steps: int | None = None
  restart: bool = False  # start over in a checkpoint directory of another run
  progress: bool = True


@dataclasses.dataclass
class RunResult:
  history: list[dict]  # one row per epoch
  learning_rates: np.ndarray  # the step size of every update
  model: nnx.Module
  finished: bool  # False when stopped by stop_after_steps


def resolve(config: configs.Config, tuned: dict | None = None) -> configs.Config:
  """Fills the defaults that depend on the dataset and the tuned settings."""
  spec = schedules.SCHEDULES[config.schedule]
  dataset = data_lib.DATASETS[config.dataset]
  lr, knob = config.lr, config.knob
  tuned_schedules = (tuned or {}).get('schedules', {})
  source = spec.eta0_from or config.schedule
  if lr is None:
    if source not in tuned_schedules:
      raise UsageError(
        f'no tuned eta0 for --schedule {config.schedule} on --dataset {config.dataset}: '
        'pass --lr (or run `python -m examples.main tune`).'
      )
    lr = tuned_schedules[source]['eta0']
  if knob is None and spec.knob and config.schedule in tuned_schedules:
    knob = tuned_schedules[config.schedule]['knob']
  return dataclasses.replace(
    config,
    model=config.model or dataset.default_model,
    lr=lr,
    knob=schedules.knob_value(config.schedule, knob) if spec.knob else None,
    augment=dataset.augment if config.augment is None else config.augment,
  )


def budget_for(config: configs.Config, num_examples: int) -> schedules.Budget:
  if config.batch_size > num_examples:
    raise UsageError(
      f'--batch-size {config.batch_size} is larger than the {num_examples} training examples'
    )
  steps_per_epoch = num_examples // config.batch_size
  return schedules.Budget(config.epochs * steps_per_epoch, steps_per_epoch)


def optimizer_for(config: configs.Config, budget: schedules.Budget):
  try:
    hyper = schedules.SCHEDULES[config.schedule].prepare(config.knob, budget)
    return schedules.build_optimizer(
      config.schedule,
      config.lr,
      hyper,
      budget,
      momentum=config.momentum,
      weight_decay=config.weight_decay,
    )
  except ValueError as error:  # the library names its own argument; say which flags set it
    raise UsageError(
      f'--schedule {config.schedule} --lr {config.lr} --knob {config.knob}: {error}'
    ) from None


def loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


def update(model: nnx.Module, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
  """One training step on the batch (x, y); returns its loss and the step size it used.

  The one step of every run: :func:`train_step` compiles it for a single
  run, and ``sweep.Network.train`` scans it over many.
  """
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  optimizer.update(model, grads, value=loss)  # `value` feeds reduce_on_plateau; others ignore it
  return loss, osd.current_learning_rate(optimizer.opt_state)


train_step = nnx.jit(update)


@nnx.jit
def eval_sums(model, x, y, valid):
  """The summed loss and the number of correct predictions over the ``valid`` examples."""
  logits = model(x)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
  correct = jnp.argmax(logits, -1) == y
  return jnp.where(valid, losses, 0).sum(), (correct & valid).sum()


def evaluation_model(schedule: str, model: nnx.Module, optimizer: nnx.Optimizer) -> nnx.Module:
  """The model at the schedule's evaluated point (the parameters, or an average of them)."""
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  evaluated = schedules.SCHEDULES[schedule].eval_params(
    nnx.as_pure(optimizer.opt_state), nnx.as_pure(params)
  )
  return nnx.merge(graphdef, evaluated, rest)


def flat_params(model: nnx.Module) -> np.ndarray:
  """Every parameter of the model in one flat vector (to compare runs)."""
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves])


class DataParallel:
  """A mesh over every device: batches sharded on 'data', everything else replicated."""

  def __init__(self, batch_size: int):
    if batch_size % jax.device_count():
      raise UsageError(
        f'--batch-size {batch_size} must be divisible by the {jax.device_count()} devices'
      )
    self.mesh = jax.make_mesh(
      (jax.device_count(),), ('data',), axis_types=(jax.sharding.AxisType.Auto,)
    )
    self.batch = NamedSharding(self.mesh, P('data'))
    self.replicated = NamedSharding(self.mesh, P())

  def replicate(self, *nodes) -> None:
    state = nnx.state(nodes)
    nnx.update(nodes, jax.device_put(state, self.replicated))

  def shard(self, array: np.ndarray) -> jax.Array:
    if jax.process_count() == 1:
      return jax.device_put(array, self.batch)
    # Each process holds the whole dataset and contributes its contiguous slice of the batch.
    per_process = len(array) // jax.process_count()
    start = jax.process_index() * per_process
    return jax.make_array_from_process_local_data(self.batch, array[start : start + per_process])


def evaluate(model, x, y, parallel: DataParallel, chunk: int = 1000) -> dict[str, float]:
  """Mean loss and accuracy over every example, in chunks sharded like the training batches.

  The last chunk is padded to the chunk size and masked, so one compilation serves every chunk.
  """
  chunk = -(-chunk // jax.device_count()) * jax.device_count()  # splits across the devices
  parallel.replicate(model)  # as eval_sums leaves it: else the second chunk compiles again
  model.eval()
  sums = []
  for start in range(0, len(x), chunk):
    size = min(chunk, len(x) - start)
    pad = [(0, chunk - size)]
    xs = np.pad(x[start : start + size], pad + [(0, 0)] * (x.ndim - 1))
    ys = np.pad(y[start : start + size], pad)
    valid = np.arange(chunk) < size
    sums.append(eval_sums(model, parallel.shard(xs), parallel.shard(ys), parallel.shard(valid)))
  model.train()
  loss, correct = np.sum(np.asarray(jax.device_get(sums), np.float64), axis=0)
  return {'loss': float(loss / len(x)), 'accuracy': float(correct / len(x))}


def say(message: str) -> None:
  """Prints once per job, not once per process."""
  if jax.process_index() == 0:
    print(message, flush=True)


def is_damaged_checkpoint(error: Exception) -> bool:
  """Whether orbax raised ``error`` because a checkpoint is damaged, partial or incompatible.

  Unparsable metadata and tensorstore's DATA_LOSS / NOT_FOUND or a tree that does not match are
  ValueErrors, a missing item a KeyError, a missing file an OSError; orbax wraps any failure to
  read array data in a bare ``Exception``, so that exact type counts too, but no other subclass.
  """
  return isinstance(error, ValueError | KeyError | OSError) or type(error) is Exception


class Checkpoints:
  """Orbax checkpoints of the model, the optimizer and the run's logs, with the run's config.

  The directory belongs to one run: ``config.json`` records its settings and a
  lock file is held while it trains, so a second writer is refused.
  """

  def __init__(self, options: Options, config: configs.Config):
    self.options = options
    self.manager = None
    if not options.checkpoint_dir:
      return
    directory = Path(options.checkpoint_dir).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    self._lock = (directory / 'lock').open('a+')
    try:
      fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = (directory / 'lock').read_text().strip() or 'another process'
      raise UsageError(f'--checkpoint-dir {directory} is in use by {owner}') from None
    self._lock.truncate(0)
    self._lock.write(f'pid {os.getpid()} on {socket.gethostname()}')
    self._lock.flush()
    config_file = directory / 'config.json'
    if config_file.exists() and not options.restart:
      differ = configs.differing_fields(json.loads(config_file.read_text()), config)
      if differ:
        raise UsageError(
          f'--checkpoint-dir {directory} holds a run with other settings: {", ".join(differ)}; '
          'pass --restart to start over'
        )
    if options.restart:
      for old in directory.iterdir():
        if old.is_dir():
          shutil.rmtree(old)
    config_file.write_text(json.dumps(dataclasses.asdict(config), indent=1))
    self.manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(max_to_keep=2)
    )
    self.last_saved_step, self.last_saved_time = 0, time.monotonic()

  def restore(self, nodes, logs: dict) -> int:
    """Restores the newest checkpoint that restores; returns its step (0 if none)."""
    if self.manager is None:
      return 0
    for step in sorted(self.manager.all_steps(), reverse=True):
      try:
        restored = self.manager.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(nnx.state(nodes)), logs=ocp.args.JsonRestore()
          ),
        )
      except Exception as error:  # broad: orbax raises a bare Exception for unreadable arrays
        if not is_damaged_checkpoint(error):
          raise
        reason = f'{type(error).__name__}: {str(error).splitlines()[0][:120]}'
        say(
          f'checkpoint {step} in {self.manager.directory} cannot be restored ({reason}); '
          'trying an older one'
        )
        continue
      nnx.update(nodes, restored.state)
      logs.update(restored.logs)
      self.last_saved_step = step
      return int(step)
    return 0

  def due(self, step: int) -> bool:
    every_steps, every_secs = (
      self.options.checkpoint_every_steps,
      self.options.checkpoint_every_secs,
    )
    if self.manager is None:
      return False
    if every_secs is not None:
      return time.monotonic() - self.last_saved_time >= every_secs
    return step - self.last_saved_step >= (every_steps or 1)

  def save(self, step: int, nodes, logs: dict) -> None:
    if self.manager is None or step == self.last_saved_step:
      return
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(nnx.state(nodes)), logs=ocp.args.JsonSave(copy.deepcopy(logs))
      ),
    )  # asynchronous: training goes on (and extends the logs) while it is written
    self.last_saved_step, self.last_saved_time = step, time.monotonic()

  def close(self) -> None:
    if self.manager is not None:
      self.manager.wait_until_finished()
      self.manager.close()
      self._lock.close()


def train_and_evaluate(
  config: configs.Config,
  options: Options = Options(),
  dataset: data_lib.Dataset | None = None,
) -> RunResult:
  """Trains one model (``config`` must be resolved); resumes from ``options.checkpoint_dir``."""
  assert config.model is not None and config.lr is not None, 'resolve(config) first'
  dataset = dataset or data_lib.load_dataset(config.dataset)
  budget = budget_for(config, len(dataset.x_train))
  if options.checkpoint_dir and options.checkpoint_every_steps is None:
    options = dataclasses.replace(options, checkpoint_every_steps=10 * budget.steps_per_epoch)
  model = models.create_model(
    config.model, dataset.x_train.shape[1:], dataset.num_classes, config.seed
  )
  optimizer = nnx.Optimizer(model, optimizer_for(config, budget), wrt=nnx.Param)
  parallel = DataParallel(config.batch_size)
  parallel.replicate(model, optimizer)
  run = _Run(config, options, dataset, budget, parallel, model, optimizer)
  try:
    run.step = run.checkpoints.restore((model, optimizer), run.logs)
    if run.step:
      say(f'resuming from step {run.step} of {budget.total_steps} in {options.checkpoint_dir}')
    while run.step < budget.total_steps and run.step != options.stop_after_steps:
      run.epoch()
    run.save()
  finally:
    run.checkpoints.close()
  history, rates = run.logs['history'], np.asarray(run.logs['learning_rates'])
  return RunResult(history, rates, model, run.step >= budget.total_steps)


@dataclasses.dataclass
class _Run:
  """The state of a run between epochs."""

  config: configs.Config
  options: Options
  dataset: data_lib.Dataset
  budget: schedules.Budget
  parallel: DataParallel
  model: nnx.Module
  optimizer: nnx.Optimizer
  step: int = 0

  def __post_init__(self):
    self.checkpoints = Checkpoints(self.options, self.config)
    self.logs: dict = {'history': [], 'learning_rates': []}
    self.pending: list[jax.Array] = []  # step sizes still on the device
    self.step_fn = nnx.cached_partial(train_step, self.model, self.optimizer)

  def flush(self) -> None:
    """Moves the step sizes still on the device into the logs."""
    self.logs['learning_rates'] += np.asarray(jax.device_get(self.pending), float).tolist()
    self.pending = []

  def save(self) -> None:
    self.flush()
    self.checkpoints.save(self.step, (self.model, self.optimizer), self.logs)

  def epoch(self) -> None:
    config, budget = self.config, self.budget
    epoch, offset = divmod(self.step, budget.steps_per_epoch)
    batches = data_lib.epoch_batches(
      len(self.dataset.x_train), config.batch_size, config.seed, epoch
    )
    augment_rng = np.random.default_rng([config.seed, epoch, 1])
    interactive = self.options.progress and sys.stderr.isatty()
    bar = tqdm(
      total=budget.steps_per_epoch,
      initial=offset,
      disable=not interactive,
      desc=f'epoch {epoch + 1}/{config.epochs}',
      leave=False,
    )
    started = time.perf_counter()
    for index in batches[offset:]:
      x = self.dataset.x_train[index]
      x = data_lib.augment(x, augment_rng) if config.augment else x
      loss, lr = self.step_fn(
        self.parallel.shard(x), self.parallel.shard(self.dataset.y_train[index])
      )
      self.pending.append(lr)
      self.step += 1
      bar.update()
      if interactive and self.step % 10 == 0:
        bar.set_postfix(loss=f'{float(loss):.4f}', lr=f'{float(lr):.3g}')
      if self.step == self.options.stop_after_steps:
        break
      if self.checkpoints.due(self.step) and self.step % budget.steps_per_epoch:
        self.save()
    bar.close()
    if self.step % budget.steps_per_epoch == 0:
      self.evaluate(epoch, started)
    if self.step == self.options.stop_after_steps or self.checkpoints.due(self.step):
      self.save()

  def evaluate(self, epoch: int, started: float) -> None:
    self.flush()
    evaluated = evaluation_model(self.config.schedule, self.model, self.optimizer)
    data, parallel = self.dataset, self.parallel
    train = evaluate(evaluated, data.x_train, data.y_train, parallel)
    test = evaluate(evaluated, data.x_test, data.y_test, parallel)
    row = {
      'epoch': epoch + 1,
      'step': self.step,
      'lr': self.logs['learning_rates'][-1],
      'train_loss': train['loss'],
      **{f'test_{k}': v for k, v in test.items()},
    }
    self.logs['history'].append(row)
    if self.options.progress or self.step == self.budget.total_steps:  # the final line, always
      say(
        f'epoch {row["epoch"]:3d}/{self.config.epochs}  step {self.step:6d}  lr {row["lr"]:.4g}  '
        f'train loss {row["train_loss"]:.4f}  test loss {row["test_loss"]:.4f}  '
        f'test acc {row["test_accuracy"]:.4f}  ({time.perf_counter() - started:.1f}s)'
      )

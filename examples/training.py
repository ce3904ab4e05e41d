"""One training run: Flax NNX model, optax optimizer, data-parallel jitted steps, checkpoints."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm import tqdm

import optax_stepdecay as osd
from examples import data as data_lib
from examples import models
from examples import schedules


@dataclasses.dataclass
class RunConfig:
  """Everything that defines a run (the command-line flags of train.py)."""

  dataset: str = 'digits'
  data_dir: str = 'data'
  model: str = 'mlp'
  schedule: str = 'step_decay'
  lr: float = 0.1
  knob: float | None = None
  momentum: float = 0.0
  weight_decay: float = 1e-4
  epochs: int = 30
  batch_size: int = 32
  seed: int = 0
  checkpoint_dir: str | None = None
  stop_after_steps: int | None = None
  augment: bool | None = None  # None: on for CIFAR, off otherwise
  progress: bool = True


@dataclasses.dataclass
class RunResult:
  history: list[dict]  # one row per epoch
  learning_rates: np.ndarray  # the step size of every update
  model: nnx.Module
  finished: bool  # False when stopped by stop_after_steps


def loss_fn(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  logits = model(x)
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), logits


@nnx.jit
def train_step(model, optimizer, x, y):
  (loss, _), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model, x, y)
  optimizer.update(model, grads, value=loss)  # `value` feeds reduce_on_plateau; others ignore it
  return loss, osd.current_learning_rate(optimizer.opt_state)


@nnx.jit
def eval_step(model, metrics, x, y):
  loss, logits = loss_fn(model, x, y)
  metrics.update(loss=loss, logits=logits, labels=y)


def _raw(tree):
  """Plain arrays of an nnx state tree (for optax functions that read optimizer state)."""
  return jax.tree.map(
    lambda v: v.get_value() if isinstance(v, nnx.Variable) else v,
    tree,
    is_leaf=lambda v: isinstance(v, nnx.Variable),
  )


def evaluation_model(schedule: str, model: nnx.Module, optimizer: nnx.Optimizer) -> nnx.Module:
  """The model to evaluate: schedule-free SGD evaluates its averaged iterate."""
  if schedule != 'schedule_free':
    return model
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  averaged = schedules.schedule_free_eval_params(_raw(optimizer.opt_state), _raw(params))
  return nnx.merge(graphdef, averaged, rest)


def flat_params(model: nnx.Module) -> np.ndarray:
  """Every parameter of the model in one flat vector (to compare runs)."""
  leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
  return np.concatenate([np.ravel(np.asarray(leaf)) for leaf in leaves])


class DataParallel:
  """A mesh over every device: batches sharded on 'data', everything else replicated."""

  def __init__(self, batch_size: int):
    if batch_size % jax.device_count():
      raise ValueError(
        f'batch_size={batch_size} must be divisible by the {jax.device_count()} devices.'
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
  model.eval()
  metrics = nnx.MultiMetric(loss=nnx.metrics.Average('loss'), accuracy=nnx.metrics.Accuracy())
  for start in range(0, len(x), chunk):
    xs = jax.device_put(x[start : start + chunk], parallel.replicated)
    ys = jax.device_put(y[start : start + chunk], parallel.replicated)
    eval_step(model, metrics, xs, ys)
  model.train()
  return {k: float(v) for k, v in metrics.compute().items()}


class Checkpoints:
  """Orbax checkpoints of the model, the optimizer and the run's logs."""

  def __init__(self, directory: str | None):
    self.manager = (
      ocp.CheckpointManager(
        Path(directory).absolute(), options=ocp.CheckpointManagerOptions(max_to_keep=2)
      )
      if directory
      else None
    )

  def restore(self, nodes, logs: dict) -> int:
    """Restores the latest checkpoint into nodes and logs; returns its step (0 if none)."""
    if self.manager is None or self.manager.latest_step() is None:
      return 0
    step = self.manager.latest_step()
    restored = self.manager.restore(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardRestore(nnx.state(nodes)), logs=ocp.args.JsonRestore()
      ),
    )
    nnx.update(nodes, restored.state)
    logs.update(restored.logs)
    return int(step)

  def save(self, step: int, nodes, logs: dict) -> None:
    if self.manager is None:
      return
    self.manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave(nnx.state(nodes)), logs=ocp.args.JsonSave(logs)
      ),
    )
    self.manager.wait_until_finished()


def train(config: RunConfig, dataset: data_lib.Dataset | None = None) -> RunResult:
  """Trains one model; resumes from config.checkpoint_dir when it holds a checkpoint."""
  dataset = dataset or data_lib.load_dataset(config.dataset, config.data_dir)
  steps_per_epoch = len(dataset.x_train) // config.batch_size
  budget = schedules.Budget(config.epochs * steps_per_epoch, steps_per_epoch)
  tx = schedules.build_optimizer(
    config.schedule, config.lr, config.knob, budget,
    momentum=config.momentum, weight_decay=config.weight_decay,
  )  # fmt: skip
  model = models.create_model(
    config.model, dataset.x_train.shape[1:], dataset.num_classes, config.seed
  )
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  parallel = DataParallel(config.batch_size)
  parallel.replicate(model, optimizer)

  checkpoints = Checkpoints(config.checkpoint_dir)
  logs: dict = {'history': [], 'learning_rates': [], 'epoch_losses': []}
  step = checkpoints.restore((model, optimizer), logs)
  augment = config.augment if config.augment is not None else config.dataset.startswith('cifar')
  interactive = config.progress and sys.stderr.isatty()
  step_fn = nnx.cached_partial(train_step, model, optimizer)  # skips re-traversing the graphs

  while step < budget.total_steps:
    epoch, offset = divmod(step, steps_per_epoch)
    batches = data_lib.epoch_batches(len(dataset.x_train), config.batch_size, config.seed, epoch)
    augment_rng = np.random.default_rng([config.seed, epoch, 1])
    bar = tqdm(total=steps_per_epoch, initial=offset, desc=f'epoch {epoch + 1}/{config.epochs}',
               disable=not interactive, leave=False)  # fmt: skip
    started = time.perf_counter()
    rates, losses = [], []  # device scalars, fetched once at the end of the epoch
    for index in batches[offset:]:
      x = dataset.x_train[index]
      x = data_lib.augment(x, augment_rng) if augment else x
      loss, lr = step_fn(parallel.shard(x), parallel.shard(dataset.y_train[index]))
      rates.append(lr)
      losses.append(loss)
      step += 1
      bar.update()
      if interactive and step % 10 == 0:
        bar.set_postfix(loss=f'{float(loss):.4f}', lr=f'{float(lr):.3g}')
      if step == config.stop_after_steps:
        break
    bar.close()
    logs['learning_rates'] += np.asarray(jax.device_get(rates), float).tolist()
    logs['epoch_losses'] += np.asarray(jax.device_get(losses), float).tolist()
    if step % steps_per_epoch == 0:
      row = {
        'epoch': epoch + 1,
        'step': step,
        'train_loss': float(np.mean(logs['epoch_losses'])),
        'lr': logs['learning_rates'][-1],
        **{f'test_{k}': v for k, v in evaluate(
          evaluation_model(config.schedule, model, optimizer),
          dataset.x_test, dataset.y_test, parallel,
        ).items()},
      }  # fmt: skip
      logs['history'].append(row)
      logs['epoch_losses'] = []
      if config.progress:
        print(
          f'epoch {row["epoch"]:3d}/{config.epochs}  step {step:6d}  lr {row["lr"]:.4g}  '
          f'train loss {row["train_loss"]:.4f}  test loss {row["test_loss"]:.4f}  '
          f'test acc {row["test_accuracy"]:.4f}  ({time.perf_counter() - started:.1f}s)',
          flush=True,
        )
    if step == config.stop_after_steps or step % steps_per_epoch == 0:
      checkpoints.save(step, (model, optimizer), logs)
    if step == config.stop_after_steps:
      break
  return RunResult(
    logs['history'], np.asarray(logs['learning_rates']), model, step >= budget.total_steps
  )

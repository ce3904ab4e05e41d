"""Many runs of one schedule in one compiled program: ``vmap`` over runs, ``scan`` over steps.

Each run (a :class:`Member`) has its own eta0, knob and seed. The knob is
turned into numbers on the host by the schedule's ``prepare`` hook; eta0 and
those numbers enter the program as arrays, so a whole tuning grid times its
seeds compiles once. Initialisation and batch order are those of
``train.train_and_evaluate`` with the same seed, so a member reproduces the
single run (tested).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples import configs
from examples import data as data_lib
from examples import models
from examples import schedules
from examples import train


@dataclasses.dataclass(frozen=True)
class Member:
  eta0: float
  knob: float | None
  seed: int


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """Per member and epoch: the metrics at the end of the epoch; per update: the step size."""

  train_loss: np.ndarray  # [members, epochs], on the whole training set
  test_loss: np.ndarray  # [members, epochs]
  test_accuracy: np.ndarray  # [members, epochs]
  learning_rates: np.ndarray  # [members, updates]
  seconds: float  # compilation and training


def _stack(trees):
  return jax.tree.map(lambda *leaves: np.stack(leaves), *trees)


@dataclasses.dataclass(frozen=True)
class Network:
  """A model as pure functions of its parameters and other state, to vmap and scan over."""

  graphdef: Any

  @classmethod
  def create(cls, config: configs.Config, dataset: data_lib.Dataset, seeds: list[int]):
    """The network and its parameters and other state for each seed, stacked on axis 0."""
    assert config.model is not None
    shape, classes = dataset.x_train.shape[1:], dataset.num_classes
    split = [
      nnx.split(models.create_model(config.model, shape, classes, seed), nnx.Param, ...)
      for seed in seeds
    ]
    return cls(split[0][0]), _stack([s[1] for s in split]), _stack([s[2] for s in split])

  def logits(self, params, rest, x, *, training: bool):
    model = nnx.merge(self.graphdef, params, rest)
    model.train() if training else model.eval()
    return model(x), nnx.state(model, nnx.Not(nnx.Param))

  def metrics(self, params, rest, x, y) -> tuple[jax.Array, jax.Array]:
    """Loss and accuracy on (x, y), in evaluation mode."""
    out, _ = self.logits(params, rest, x, training=False)
    loss = optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return loss, jnp.mean(jnp.argmax(out, -1) == y)

  @staticmethod
  def init(tx, params):
    """The optimizer state that :meth:`train` carries: as ``nnx.Optimizer`` holds it, unwrapped."""
    return nnx.as_pure(tx.init(params))

  def train(self, tx, carry, batches, x_train, y_train):
    """Updates (params, rest, opt_state) once per row of batch indices; returns the step sizes.

    Each step is ``train.update`` on the model and the ``nnx.Optimizer`` that
    the carry holds, as a single run takes it.
    """

    def step(carry, index):
      params, rest, opt_state = carry
      model = nnx.merge(self.graphdef, params, rest)
      model.train()
      optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)  # its fresh state is dead code
      nnx.update(optimizer.opt_state, nnx.state(opt_state))
      _, rate = train.update(model, optimizer, x_train[index], y_train[index])
      _, params, rest = nnx.split(model, nnx.Param, ...)
      return (params, rest, nnx.as_pure(optimizer.opt_state)), rate

    return jax.lax.scan(step, carry, batches)


def train_many(
  config: configs.Config,
  members: list[Member],
  dataset: data_lib.Dataset,
  spec: schedules.ScheduleSpec | None = None,
) -> SweepResult:
  """Trains every member of one schedule (``config`` gives everything else) in one program.

  ``spec`` replaces the registry's entry for ``config.schedule`` (a variant to measure).
  """
  if config.augment:
    raise train.UsageError(f'--dataset {config.dataset}: many-run comparisons do not augment')
  started = time.perf_counter()
  budget = train.budget_for(config, len(dataset.x_train))
  spec = spec or schedules.SCHEDULES[config.schedule]
  hypers = [spec.prepare(m.knob, budget) for m in members]
  seeds = sorted({m.seed for m in members})
  shape = (config.epochs, budget.steps_per_epoch, config.batch_size)
  batches = np.stack(
    [
      data_lib.batch_stream(
        len(dataset.x_train), config.batch_size, seed, budget.total_steps
      ).reshape(shape)
      for seed in seeds
    ]
  )
  network, params, rest = Network.create(config, dataset, [m.seed for m in members])

  def run(eta0, hyper, params, rest, seed_index, arrays):
    x_train, y_train, x_test, y_test, batches = arrays
    tx = spec.optimizer(
      eta0, hyper, budget, momentum=config.momentum, weight_decay=config.weight_decay
    )

    def epoch(carry, epoch_batches):
      carry, rates = network.train(tx, carry, epoch_batches, x_train, y_train)
      params, rest, opt_state = carry
      evaluated = spec.eval_params(opt_state, nnx.as_pure(params))
      train_loss, _ = network.metrics(evaluated, rest, x_train, y_train)
      test_loss, test_accuracy = network.metrics(evaluated, rest, x_test, y_test)
      return carry, (train_loss, test_loss, test_accuracy, rates)

    _, out = jax.lax.scan(epoch, (params, rest, network.init(tx, params)), batches[seed_index])
    return out

  hyper = {k: np.asarray([h[k] for h in hypers]) for k in hypers[0]}
  arrays = (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test, batches)
  program = jax.jit(jax.vmap(run, in_axes=(0, 0, 0, 0, 0, None)))
  train_loss, test_loss, test_accuracy, rates = jax.device_get(
    program(
      np.asarray([m.eta0 for m in members], np.float32),
      hyper,
      params,
      rest,
      np.asarray([seeds.index(m.seed) for m in members]),
      arrays,
    )
  )
  return SweepResult(
    np.asarray(train_loss),
    np.asarray(test_loss),
    np.asarray(test_accuracy),
    np.asarray(rates).reshape(len(members), -1),
    time.perf_counter() - started,
  )

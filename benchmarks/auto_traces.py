"""Where auto_step_decay cuts against tuned step decay: its stages and its checks, traced.

Usage:
  python -m benchmarks.auto_traces --out DIR [--quick]

For least squares and least absolute deviations, at the horizons where auto's
ratio to tuned step decay grows, step decay runs with its eta0 tuned for the
horizon (as in benchmarks.theory) and auto_step_decay from that eta0, on a few
seeds. Every update's step size and error is recorded, and at every check of
auto's distance diagnostic the distance |x - r|^2 from its restart point; for
least squares also the error left along the Hessian's flattest direction.
Then auto on the MNIST-1D example (the committed tuned eta0 of step decay,
two seeds): its cuts and the step it ends with.
Writes DIR/auto_traces.md and DIR/auto_traces.png.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_stepdecay as osd
from benchmarks import report
from benchmarks import runner
from benchmarks.problems import Problem
from benchmarks.problems import all_problems
from optax_stepdecay import _auto
from optax_stepdecay import _state

PROBLEMS = ('least_squares', 'lad')


@dataclasses.dataclass(frozen=True)
class Settings:
  horizons: tuple[int, ...]
  seeds: int
  mnist1d_epochs: int


FULL = Settings((16_384, 65_536), 4, 60)
QUICK = Settings((1024,), 2, 4)


@dataclasses.dataclass(frozen=True)
class Trace:
  """One schedule on one problem: per seed and update, its step size and errors.

  Attributes:
    learning_rate: [seeds, T] the step size of each update.
    error: [seeds, T] f(x_t) - f* after each update.
    flat_error: [seeds, T] the part of the error along the flattest direction of
      the Hessian (least squares), or None.
    terms: [seeds, T, 2] auto's check after each update (distance, 1 if it cut), NaN
      where there was none; None for step decay.
  """

  learning_rate: np.ndarray
  error: np.ndarray
  flat_error: np.ndarray | None
  terms: np.ndarray | None


def cut_steps(learning_rate: np.ndarray) -> list[int]:
  """The updates after which the step size changed."""
  return [int(t) + 1 for t in np.flatnonzero(np.diff(learning_rate))]


def auto_checks(opt_state: Any, previous: Any) -> jax.Array | None:
  """The distance |x - r|^2 auto_step_decay measured at this update's check, and whether it cut.

  [distance, cut]: NaN where it ran no check (a check that cut records no
  distance: the state restarts); None when ``opt_state`` holds no auto_step_decay.
  """
  found = _state.find(opt_state, [_auto.AutoStepDecayState])
  if not found:
    return None
  (state,), (before,) = found, _state.find(previous, [_auto.AutoStepDecayState])
  cut = state.stage > before.stage
  checked = ~cut & (state.last_check != before.last_check)
  distance = jnp.where(checked, state.distance.astype(jnp.float32), jnp.nan)
  return jnp.stack([distance, jnp.where(cut, 1.0, jnp.nan)])


def flattest_direction(problem: Problem) -> tuple[np.ndarray, float, np.ndarray] | None:
  """The minimiser, the smallest Hessian eigenvalue and its eigenvector (quadratic problems)."""
  if problem.name != 'least_squares':
    return None
  d = problem.x.shape[1]
  hessian = np.asarray(jax.hessian(lambda w: problem.objective(w, jnp))(jnp.zeros(d)), np.float64)
  gradient = np.asarray(jax.grad(lambda w: problem.objective(w, jnp))(jnp.zeros(d)), np.float64)
  values, vectors = np.linalg.eigh(hessian)
  return -np.linalg.solve(hessian, gradient), float(values[0]), vectors[:, 0]


def trace(problem: Problem, total: int, seeds: int, tx: optax.GradientTransformation) -> Trace:
  """Runs tx on every seed, recording the step size, the errors and auto's checks."""
  x, y = jnp.asarray(problem.x, jnp.float32), jnp.asarray(problem.y, jnp.float32)
  flat = flattest_direction(problem)

  def observe(w, state, previous):
    objective = jnp.mean(problem.loss(w, x, y, jnp)) + problem.regulariser(w, jnp)
    out = {'lr': osd.current_learning_rate(state), 'f': objective - problem.f_star}
    if flat is not None:
      minimiser, curvature, direction = flat
      out['flat'] = 0.5 * curvature * jnp.dot(w - minimiser, direction) ** 2
    terms = auto_checks(state, previous)
    if terms is not None:
      out['terms'] = terms
    return out

  run = jax.jit(jax.vmap(lambda seed: runner.trajectory(problem, total, tx, seed, observe)[2]))
  out = jax.device_get(run(jnp.arange(seeds)))
  return Trace(out['lr'], out['f'], out.get('flat'), out.get('terms'))


def tuned_eta0(problem: Problem, total: int, seeds: int) -> float:
  """Step decay's eta0 for this horizon, tuned as benchmarks.theory tunes it."""
  summaries, _ = runner.run_open_loop(problem, total, seeds, runner.ETA0_GRID)
  return summaries[runner.last_iterate_key(problem)][runner.STEP_DECAY].eta0


def step_decay(eta0: float, total: int) -> optax.GradientTransformation:
  schedule = osd.fixed_horizon_step_decay_schedule(
    eta0, total_steps=total, decay_factor=runner.ALPHA
  )
  return osd.scale_by_tracked_learning_rate(schedule)


@dataclasses.dataclass(frozen=True)
class Case:
  problem: str
  horizon: int
  eta0: float
  step_decay: Trace
  auto: Trace


def run_cases(settings: Settings) -> list[Case]:
  problems = {p.name: p for p in all_problems() if p.name in PROBLEMS}
  cases = []
  for name, problem in problems.items():
    for total in settings.horizons:
      eta0 = tuned_eta0(problem, total, settings.seeds)
      reference = trace(problem, total, settings.seeds, step_decay(eta0, total))
      auto = trace(problem, total, settings.seeds, runner.auto_for(eta0))
      cases.append(Case(name, total, eta0, reference, auto))
      print(f'[auto_traces] {name} T={total}', flush=True)
  return cases


@dataclasses.dataclass(frozen=True)
class NetworkTrace:
  """auto on MNIST-1D, per seed and epoch: |x|^2 and the training loss; its step per update."""

  eta0: float
  learning_rate: np.ndarray  # [seeds, updates]
  sq_norm: np.ndarray  # [seeds, epochs]
  train_loss: np.ndarray  # [seeds, epochs], mean over the epoch's batches


def mnist1d_trace(epochs: int, seeds: int) -> NetworkTrace:
  """auto_step_decay on the examples' MNIST-1D CNN from step decay's committed tuned eta0."""
  from examples import configs
  from examples import data as data_lib
  from examples import schedules
  from examples import sweep
  from examples import train

  tuned = configs.load_tuned('mnist1d')
  assert tuned is not None
  config = dataclasses.replace(
    configs.Config(**{**tuned['config'], 'schedule': 'auto'}), epochs=epochs
  )
  eta0 = tuned['schedules'][runner.STEP_DECAY]['eta0']
  dataset = data_lib.load_dataset('mnist1d')
  budget = train.budget_for(config, len(dataset.x_train))
  network, params, rest = sweep.Network.create(config, dataset, list(range(seeds)))
  batches = np.stack(
    [
      data_lib.batch_stream(len(dataset.x_train), config.batch_size, seed, budget.total_steps)
      for seed in range(seeds)
    ]
  )
  x, y = jnp.asarray(dataset.x_train), jnp.asarray(dataset.y_train)
  tx = schedules.build_optimizer(
    'auto', eta0, {}, budget, momentum=config.momentum, weight_decay=config.weight_decay
  )

  def run(params, rest, batches):
    def loss_fn(params, rest, index):
      out, rest = network.logits(params, rest, x[index], training=True)
      return optax.softmax_cross_entropy_with_integer_labels(out, y[index]).mean(), rest

    def step(carry, index):
      params, rest, previous = carry
      (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, index)
      updates, state = tx.update(grads, previous, params)
      sq_norm = sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))
      observed = (osd.current_learning_rate(state), loss, sq_norm)
      return (optax.apply_updates(params, updates), rest, state), observed

    return jax.lax.scan(step, (params, rest, tx.init(params)), batches)[1]

  lr, loss, sq_norm = jax.device_get(jax.jit(jax.vmap(run))(params, rest, batches))
  per_epoch = budget.steps_per_epoch
  last = slice(per_epoch - 1, None, per_epoch)
  return NetworkTrace(
    eta0,
    lr,
    sq_norm[:, last],
    loss.reshape(seeds, epochs, per_epoch).mean(-1),
  )


def _cuts_per_seed(learning_rates: np.ndarray) -> str:
  return ', '.join(str(cut_steps(lr)) for lr in learning_rates)


def markdown(cases: list[Case], network: NetworkTrace, command: str) -> str:
  """The traces as tables: stages, step sizes and errors; auto's cuts."""
  lines = [
    '# auto_step_decay against tuned step decay, traced',
    '',
    f"Command: `{command}`. Step decay: the paper's prescription (alpha = {runner.ALPHA:g}) with "
    'eta0 tuned for the horizon; auto: auto_step_decay with the library defaults '
    f'({report.auto_defaults()}) from that eta0 (rates.md tunes one eta0 per problem '
    'instead). Errors are means over the seeds at T; '
    '"flattest direction" is the part of the error along the Hessian\'s eigenvector of smallest '
    'eigenvalue (least squares only).',
    '',
    '| problem | T | eta0 | step decay: error | auto: error | ratio | step decay: flattest '
    'direction | auto: flattest direction | auto: final step (per seed) | '
    'auto: cuts after update (per seed) |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|',
  ]
  for case in cases:
    reference, auto = case.step_decay, case.auto
    flat = [f'{t.flat_error[:, -1].mean():.2e}' if t.flat_error is not None else '-'
            for t in (reference, auto)]  # fmt: skip
    lines.append(
      f'| {case.problem} | {case.horizon} | {case.eta0:g} | {reference.error[:, -1].mean():.2e} | '
      f'{auto.error[:, -1].mean():.2e} | '
      f'{auto.error[:, -1].mean() / reference.error[:, -1].mean():.2f} | {flat[0]} | {flat[1]} | '
      f'{", ".join(f"{lr:.0e}" for lr in auto.learning_rate[:, -1])} | '
      f'{_cuts_per_seed(auto.learning_rate)} |'
    )
  lines += [
    '',
    '## MNIST-1D',
    '',
    f"auto_step_decay on the examples' CNN from step decay's tuned eta0 = {network.eta0:g} "
    f'(momentum 0.9, weight decay 5e-4, batch 128, {network.learning_rate.shape[1]} updates, '
    'library defaults). Per seed: its cuts, its last step and ‖x‖².',
    '',
    '| seed | cuts after update | final step | ‖x‖² at epoch 1 | max ‖x‖² | last ‖x‖² |',
    '|---:|---|---:|---:|---:|---:|',
  ]
  for seed, (lr, norms) in enumerate(zip(network.learning_rate, network.sq_norm, strict=True)):
    lines.append(
      f'| {seed} | {cut_steps(lr)} | {lr[-1]:.3g} | {norms[0]:.0f} | {norms.max():.0f} | '
      f'{norms[-1]:.0f} |'
    )
  return '\n'.join(lines) + '\n'


def _checks_panel(ax: Any, steps: np.ndarray, checks: np.ndarray) -> None:
  checked = ~np.isnan(checks[:, 0])
  ax.plot(steps[checked], checks[checked, 0], '.', label='|x - r|^2 at a check')
  for cut in steps[~np.isnan(checks[:, 1])]:
    ax.axvline(cut, color='C1', lw=0.5)
  ax.set(xscale='log', yscale='log', xlabel='update',
         title="auto's checks (seed 0); vertical lines: cuts")  # fmt: skip
  ax.legend(fontsize=7)


def plot(cases: list[Case], network: NetworkTrace, path: Path) -> None:
  """Per case at its longest horizon, and for MNIST-1D: step sizes, errors, auto's checks."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  longest = [c for c in cases if c.horizon == max(x.horizon for x in cases)]
  fig, axes = plt.subplots(len(longest) + 1, 3, figsize=(16, 4.2 * (len(longest) + 1)))
  for row, case in zip(axes, longest, strict=False):
    steps = np.arange(1, case.horizon + 1)
    title = f'{case.problem}, T = {case.horizon}'
    for name, t, style in (('step decay', case.step_decay, 'k-'), ('auto', case.auto, 'C1-')):
      row[0].plot(steps, t.learning_rate[0], style, label=f'{name} (seed 0)')
      row[1].plot(steps, t.error.mean(0), style, label=f'{name}: error')
      if t.flat_error is not None:
        row[1].plot(steps, t.flat_error.mean(0), style[:-1] + ':',
                    label=f'{name}: along the flattest direction')  # fmt: skip
    row[0].set(yscale='log', xscale='log', xlabel='update', title=f'{title}: step size')
    row[1].set(yscale='log', xscale='log', xlabel='update', title=f'{title}: f - f* (mean)')
    for ax in row[:2]:
      ax.legend(fontsize=7)
    _checks_panel(row[2], steps, case.auto.terms[0])
  row = axes[-1]
  epochs = np.arange(1, network.sq_norm.shape[1] + 1)
  for seed, norms in enumerate(network.sq_norm):
    row[0].plot(epochs, norms, label=f'seed {seed}')
  row[0].set(xlabel='epoch', title='MNIST-1D, auto: |x|^2 at the end of each epoch')
  for seed, loss in enumerate(network.train_loss):
    row[1].plot(epochs, loss, label=f'seed {seed}')
  row[1].set(yscale='log', xlabel='epoch', title='MNIST-1D, auto: training loss (epoch mean)')
  for seed, lr in enumerate(network.learning_rate):
    row[2].plot(np.arange(1, len(lr) + 1), lr, label=f'seed {seed}')
  row[2].set(yscale='log', xlabel='update', title='MNIST-1D, auto: step size')
  for ax in row:
    ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def command_line(args: argparse.Namespace) -> str:
  """The command that reproduces a run with these arguments."""
  quick = ' --quick' if args.quick else ''
  return f'python -m benchmarks.auto_traces{quick} --out {args.out}'


def main(argv: list[str] | None = None) -> tuple[list[Case], NetworkTrace]:
  """Runs the traces, writes DIR/auto_traces.md and DIR/auto_traces.png, prints the tables."""
  parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True)
  parser.add_argument('--quick', action='store_true', help='one short horizon, 2 seeds: seconds')
  args = parser.parse_args(argv)
  settings = QUICK if args.quick else FULL
  cases = run_cases(settings)
  network = mnist1d_trace(settings.mnist1d_epochs, 2)
  args.out.mkdir(parents=True, exist_ok=True)
  text = markdown(cases, network, command_line(args))
  (args.out / 'auto_traces.md').write_text(text)
  plot(cases, network, args.out / 'auto_traces.png')
  print(text)
  return cases, network


if __name__ == '__main__':
  main()

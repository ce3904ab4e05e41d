"""SGD runs of every step size on a problem, summarised into typed result records.

For every problem, horizon T and step size, SGD runs from the same start for T
steps on every seed; the step size's eta0 is tuned per horizon on a grid (the
best mean final error over the seeds). All (schedule x eta0 x seed) runs of one
problem and horizon are a single vmapped program.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optax_stepdecay as osd
from benchmarks.problems import Problem

ETA0_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
ALPHA = 2.0
INV_T0 = 64  # inv_t and inv_sqrt_t: eta0 / (1 + t / 64), eta0 / (1 + sqrt(t / 64))
EXP_B = 10.0  # exponential: eta0 * (b / T)^(t / T)
HAZAN_KALE_FIRST = 16  # geometric: stage k lasts 16 * 2^k steps at eta0 / 2^k
AUTO = 'auto'
STEP_DECAY = 'step_decay'


@dataclasses.dataclass(frozen=True)
class Summary:
  """One step size at one horizon: its tuned eta0 and the error over the seeds there.

  Attributes:
    eta0: The eta0 with the lowest mean error.
    mean: The mean error at that eta0.
    ci95: The half-width of the 95% interval of the mean.
    at_grid_edge: Whether eta0 is the first or the last of a grid of several.
  """

  eta0: float
  mean: float
  ci95: float
  at_grid_edge: bool


@dataclasses.dataclass(frozen=True)
class ProblemResult:
  """Every step size on one measure of error of one problem, over the horizons.

  Attributes:
    paper_rate: The paper's rate, as text.
    paper_slope: The log-log slope of the paper's rate over the horizons.
    rate_values: The paper's rate at each horizon.
    eta0_grid: The grid eta0 is tuned on.
    rows: Per step size, its summary at each horizon.
    slopes: Per step size, the log-log slope of its mean error over the horizons.
  """

  paper_rate: str
  paper_slope: float
  rate_values: list[float]
  eta0_grid: list[float]
  rows: dict[str, list[Summary]]
  slopes: dict[str, float]


@dataclasses.dataclass(frozen=True)
class Results:
  """A whole run of the benchmark.

  Attributes:
    command: The command line that produced it.
    horizons: The horizons T.
    seeds: The number of seeds per configuration.
    schedules: The step sizes, in the order of the tables.
    problems: Per measure of error (a problem, or a problem at its last iterate), its results.
    elapsed_s: The wall time of the run, in seconds.
  """

  command: str
  horizons: list[int]
  seeds: int
  schedules: list[str]
  problems: dict[str, ProblemResult]
  elapsed_s: float


def unit_schedules(total: int) -> dict[str, Callable]:
  """Every step size with eta0 = 1, for a horizon of `total` steps."""
  beta = (EXP_B / total) ** (1 / total)
  return {
    STEP_DECAY: osd.fixed_horizon_step_decay_schedule(1.0, total_steps=total, decay_factor=ALPHA),
    'constant': lambda t: jnp.ones_like(t, jnp.float32),
    'inv_t': lambda t: 1 / (1 + t / INV_T0),
    'inv_sqrt_t': lambda t: 1 / (1 + jnp.sqrt(t / INV_T0)),
    'exponential': lambda t: beta**t,
    'cosine': lambda t: 0.5 * (1 + jnp.cos(jnp.pi * t / total)),
    'geometric': osd.geometric_stage_decay_schedule(
      1.0, first_stage_length=HAZAN_KALE_FIRST, decay_factor=2.0, stage_growth=2.0
    ),
  }


def schedule_names() -> list[str]:
  """The open-loop step sizes, then auto_step_decay."""
  return [*unit_schedules(2), AUTO]


def last_iterate_key(problem: Problem) -> str:
  """The key of the error measured at the last iterate, the point auto_step_decay outputs."""
  return problem.name if problem.f_star is not None else f'{problem.name}_last_iterate'


def trajectory(
  problem: Problem,
  total: int,
  tx: optax.GradientTransformation,
  seed: jax.Array,
  observe: Callable[[jax.Array, optax.OptState, optax.OptState], Any] = lambda *_: None,
) -> tuple[jax.Array, optax.OptState, Any]:
  """T steps of minibatch SGD (projected onto the problem's ball) with updates from tx.

  Returns the last iterate, the last state and, stacked over the steps,
  ``observe(iterate, state, previous_state)`` after each update.
  """
  x, y = jnp.asarray(problem.x, jnp.float32), jnp.asarray(problem.y, jnp.float32)
  n, d = problem.x.shape
  key = jax.random.PRNGKey(seed)

  def minibatch_objective(w, idx):
    return jnp.mean(problem.loss(w, x[idx], y[idx], jnp)) + problem.regulariser(w, jnp)

  def step(carry, t):
    w, previous = carry
    idx = jax.random.randint(jax.random.fold_in(key, t), (problem.batch_size,), 0, n)
    update, state = tx.update(jax.grad(minibatch_objective)(w, idx), previous, w)
    w = w + update
    if problem.radius is not None:
      w = w * jnp.minimum(1.0, problem.radius / jnp.linalg.norm(w))
    return (w, state), observe(w, state, previous)

  w0 = jnp.zeros(d)
  (w, state), observed = jax.lax.scan(step, (w0, tx.init(w0)), jnp.arange(total))
  return w, state, observed


def simulate(
  problem: Problem, total: int, tx: optax.GradientTransformation, seed: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The last iterate of :func:`trajectory` and the output point.

  The output point is the iterate kept by an ``osd.sample_iterate`` in tx, or
  the last one when there is none.
  """
  w, state, _ = trajectory(problem, total, tx, seed)
  try:
    return w, osd.output_params(state)
  except ValueError:
    return w, w


def errors_of(problem: Problem, last: jax.Array, output: jax.Array) -> dict[str, np.ndarray]:
  """f(x_T) - f* in float64 (convex), or |grad f|^2 at the output and last points (non-convex)."""
  if problem.f_star is None:
    x, y = jnp.asarray(problem.x, jnp.float32), jnp.asarray(problem.y, jnp.float32)

    def gradient_norm(w):
      grad = jax.grad(lambda v: jnp.mean(problem.loss(v, x, y, jnp)) + problem.regulariser(v, jnp))
      return jnp.sum(grad(w) ** 2)

    norms = jax.jit(jnp.vectorize(gradient_norm, signature='(d)->()'))
    return {problem.name: np.asarray(norms(output), np.float64),
            last_iterate_key(problem): np.asarray(norms(last), np.float64)}  # fmt: skip
  finals = np.asarray(last, np.float64)
  values = np.array([problem.objective(w) for w in finals.reshape(-1, finals.shape[-1])])
  return {problem.name: np.maximum(values.reshape(finals.shape[:-1]) - problem.f_star, 1e-16)}


def run_horizon(
  problem: Problem, total: int, seeds: int, grid: tuple[float, ...]
) -> dict[str, np.ndarray]:
  """Errors, shape (schedules, eta0s, seeds), of every open-loop step size at one horizon."""
  steps = jnp.arange(total)
  table = jnp.stack([jnp.asarray(s(steps), jnp.float32) for s in unit_schedules(total).values()])

  def run(schedule_row, eta0, seed):
    def rates(t):
      return eta0 * schedule_row[t]

    tx = optax.chain(optax.scale_by_learning_rate(rates), osd.sample_iterate(rates, seed=seed))
    return simulate(problem, total, tx, seed)

  over_seeds = jax.vmap(run, in_axes=(None, None, 0))
  over_grid = jax.vmap(over_seeds, in_axes=(None, 0, None))
  over_schedules = jax.jit(jax.vmap(over_grid, in_axes=(0, None, None)))
  last, output = over_schedules(table, jnp.asarray(grid, jnp.float32), jnp.arange(seeds))
  return errors_of(problem, last, output)


def auto_for(problem: Problem, eta0: float) -> optax.GradientTransformation:
  """auto_step_decay as the benchmark runs it: library defaults, a test every epoch, stages of
  at least two epochs."""
  epoch = len(problem.y) // problem.batch_size
  return osd.auto_step_decay(eta0, test_interval=epoch, min_stage_length=2 * epoch)


def run_auto(problem: Problem, total: int, seeds: int, eta0: float) -> dict[str, np.ndarray]:
  """auto_step_decay, untuned (library defaults; tests every epoch), from step decay's eta0."""
  tx = auto_for(problem, eta0)
  last, output = jax.jit(jax.vmap(lambda seed: simulate(problem, total, tx, seed)))(
    jnp.arange(seeds)
  )
  return errors_of(problem, last[None, None], output[None, None])


def summarise(
  errors: np.ndarray, schedules: Sequence[str], grid: tuple[float, ...]
) -> dict[str, Summary]:
  """Per schedule: the eta0 with the lowest mean error, its mean and 95% interval.

  Args:
    errors: Errors of shape (schedules, grid, seeds).
    schedules: The names of the schedules along the first axis.
    grid: The eta0 along the second axis.
  """
  mean = np.nan_to_num(errors.mean(axis=2), nan=np.inf)
  summaries = {}
  for name, by_eta0, best in zip(schedules, errors, mean.argmin(axis=1), strict=True):
    values = by_eta0[best]
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    at_edge = len(grid) > 1 and bool(best in (0, len(grid) - 1))
    summaries[name] = Summary(grid[best], float(values.mean()), float(half), at_edge)
  return summaries


def run_problem_horizon(
  problem: Problem, total: int, seeds: int, grid: tuple[float, ...]
) -> dict[str, dict[str, Summary]]:
  """Per measure of error, per step size: its summary at one horizon, auto_step_decay last."""
  names = list(unit_schedules(total))
  tuned = {
    key: summarise(errors, names, grid)
    for key, errors in run_horizon(problem, total, seeds, grid).items()
  }
  eta0 = tuned[last_iterate_key(problem)][STEP_DECAY].eta0
  for key, errors in run_auto(problem, total, seeds, eta0).items():
    tuned[key] |= summarise(errors, [AUTO], (eta0,))
  return tuned


def slope(horizons: Sequence[int], values: Sequence[float]) -> float:
  """The least-squares slope of log(values) against log(horizons)."""
  return float(np.polyfit(np.log(horizons), np.log(values), 1)[0])


def run_problem(
  problem: Problem, horizons: Sequence[int], seeds: int, grid: tuple[float, ...]
) -> dict[str, ProblemResult]:
  """Every step size on one problem at every horizon, per measure of error."""
  by_key: dict[str, dict[str, list[Summary]]] = {}
  for horizon in horizons:
    started = time.perf_counter()
    for key, by_schedule in run_problem_horizon(problem, horizon, seeds, grid).items():
      for name, summary in by_schedule.items():
        by_key.setdefault(key, {}).setdefault(name, []).append(summary)
    elapsed = time.perf_counter() - started
    print(f'[theory] {problem.name:14s} T={horizon:6d} ({elapsed:.1f}s)', flush=True)
  rate_values = [float(v) for v in problem.rate(np.array(horizons, np.float64))]
  return {
    key: ProblemResult(
      paper_rate=problem.paper_rate,
      paper_slope=slope(horizons, rate_values),
      rate_values=rate_values,
      eta0_grid=list(grid),
      rows=rows,
      slopes={
        name: slope(horizons, [s.mean for s in summaries]) for name, summaries in rows.items()
      },
    )
    for key, rows in by_key.items()
  }


def run(
  make_problems: Callable[[], Sequence[Problem]],
  horizons: list[int],
  seeds: int,
  grid: tuple[float, ...],
  command: str,
) -> Results:
  """Every step size on every problem; the elapsed time counts building the problems (their f*).

  Args:
    make_problems: Builds the problems.
    horizons: The horizons T.
    seeds: The number of seeds per configuration.
    grid: The eta0 tuned over.
    command: The command line recorded in the results.
  """
  started = time.perf_counter()
  by_key: dict[str, ProblemResult] = {}
  for problem in make_problems():
    by_key |= run_problem(problem, horizons, seeds, grid)
  return Results(
    command=command,
    horizons=horizons,
    seeds=seeds,
    schedules=schedule_names(),
    problems=by_key,
    elapsed_s=time.perf_counter() - started,
  )

"""SGD runs of every step size on a problem, summarised into typed result records.

Two disjoint sets of seeds: every eta0 is chosen on the tuning seeds, and the
errors reported are those of fresh runs on the reported seeds at that eta0
(choosing and reporting on the same seeds would favour every tuned method by
its luckiest draw). For every problem, horizon T and open-loop step size, SGD
runs from the same start for T steps; its eta0 is tuned per horizon on a grid
(the best mean final error). The horizon-free methods run once per seed to
the longest horizon and are read at every horizon: auto_step_decay with one
eta0 per problem (the lowest worst ratio to tuned step decay over the
horizons), schedule-free SGD with its eta0 tuned per horizon like the
open-loop step sizes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from collections.abc import Mapping
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
SCHEDULE_FREE = 'schedule_free'
STEP_DECAY = 'step_decay'

# auto_step_decay as the benchmark runs it: the library's defaults.
AUTO_SETTINGS: dict[str, float | None] = {}


@dataclasses.dataclass(frozen=True)
class Summary:
  """One step size at one horizon: its tuned eta0 and the error over the reported seeds there.

  Attributes:
    eta0: The eta0 chosen on the tuning seeds.
    mean: The mean error on the reported seeds at that eta0.
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
    seeds: The number of reported seeds per configuration (as many others tune eta0).
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


def tuning_seeds(seeds: int) -> jax.Array:
  """The seeds eta0 is chosen on."""
  return jnp.arange(seeds)


def reported_seeds(seeds: int) -> jax.Array:
  """The seeds the errors are reported on, disjoint from :func:`tuning_seeds`."""
  return jnp.arange(seeds, 2 * seeds)


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
  """The open-loop step sizes, then schedule-free SGD, then auto_step_decay."""
  return [*unit_schedules(2), SCHEDULE_FREE, AUTO]


def last_iterate_key(problem: Problem) -> str:
  """The key of the error measured at the last iterate, the point auto_step_decay outputs."""
  return problem.name if problem.f_star is not None else f'{problem.name}_last_iterate'


def _sgd_step(problem: Problem, tx: optax.GradientTransformation, seed: jax.Array) -> Callable:
  """One step of minibatch SGD (projected onto the problem's ball): (w, state), t -> (w, state)."""
  x, y = jnp.asarray(problem.x, jnp.float32), jnp.asarray(problem.y, jnp.float32)
  n = problem.x.shape[0]
  key = jax.random.PRNGKey(seed)

  def minibatch_objective(w, idx):
    return jnp.mean(problem.loss(w, x[idx], y[idx], jnp)) + problem.regulariser(w, jnp)

  def step(w, state, t):
    idx = jax.random.randint(jax.random.fold_in(key, t), (problem.batch_size,), 0, n)
    update, state = tx.update(jax.grad(minibatch_objective)(w, idx), state, w)
    w = w + update
    if problem.radius is not None:
      w = w * jnp.minimum(1.0, problem.radius / jnp.linalg.norm(w))
    return w, state

  return step


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
  sgd_step = _sgd_step(problem, tx, seed)

  def step(carry, t):
    w, previous = carry
    w, state = sgd_step(w, previous, t)
    return (w, state), observe(w, state, previous)

  w0 = jnp.zeros(problem.x.shape[1])
  (w, state), observed = jax.lax.scan(step, (w0, tx.init(w0)), jnp.arange(total))
  return w, state, observed


def snapshots(
  problem: Problem,
  horizons: Sequence[int],
  tx: optax.GradientTransformation,
  seed: jax.Array,
  point: Callable[[jax.Array, optax.OptState], jax.Array] = lambda w, state: w,
) -> jax.Array:
  """One run to the longest horizon: ``point(w, state)`` after T updates for each T, [H, d].

  The points are kept in the scan's carry, not stacked over the steps.
  """
  sgd_step = _sgd_step(problem, tx, seed)
  at = jnp.asarray(horizons)

  def step(carry, t):
    w, state, points = carry
    w, state = sgd_step(w, state, t)
    points = jnp.where((at == t + 1)[:, None], point(w, state)[None], points)
    return (w, state, points), None

  w0 = jnp.zeros(problem.x.shape[1])
  start = (w0, tx.init(w0), jnp.zeros((len(horizons), len(w0))))
  return jax.lax.scan(step, start, jnp.arange(max(horizons)))[0][2]


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
  problem: Problem, total: int, seeds: jax.Array, eta0s: np.ndarray
) -> dict[str, np.ndarray]:
  """Errors, shape (schedules, eta0s, seeds), of every open-loop step size at one horizon.

  ``eta0s`` has shape (schedules, k): each schedule runs its own k values.
  """
  steps = jnp.arange(total)
  table = jnp.stack([jnp.asarray(s(steps), jnp.float32) for s in unit_schedules(total).values()])

  def run(schedule_row, eta0, seed):
    def rates(t):
      return eta0 * schedule_row[t]

    tx = optax.chain(optax.scale_by_learning_rate(rates), osd.sample_iterate(rates, seed=seed))
    return simulate(problem, total, tx, seed)

  over_seeds = jax.vmap(run, in_axes=(None, None, 0))
  over_eta0 = jax.vmap(over_seeds, in_axes=(None, 0, None))
  over_schedules = jax.jit(jax.vmap(over_eta0, in_axes=(0, 0, None)))
  last, output = over_schedules(table, jnp.asarray(eta0s, jnp.float32), seeds)
  return errors_of(problem, last, output)


def auto_for(
  eta0: Any, settings: Mapping[str, Any] = AUTO_SETTINGS
) -> optax.GradientTransformation:
  """auto_step_decay as the benchmark runs it: from eta0, with `settings` over the defaults."""
  return osd.auto_step_decay(eta0, **settings)


def schedule_free_for(eta0: Any) -> optax.GradientTransformation:
  """optax.contrib.schedule_free_sgd with its defaults (b1 = 0.9, no warmup)."""
  return optax.contrib.schedule_free_sgd(eta0)


def schedule_free_point(w: jax.Array, state: optax.OptState) -> jax.Array:
  """Schedule-free SGD's output: the average it evaluates gradients around."""
  return optax.contrib.schedule_free_eval_params(state, w)


def run_anytime(
  problem: Problem,
  horizons: Sequence[int],
  seeds: jax.Array,
  make_tx: Callable[[Any], optax.GradientTransformation],
  configs: Any,
  point: Callable[[jax.Array, optax.OptState], jax.Array] = lambda w, state: w,
  config_axes: int | None = None,
) -> dict[str, np.ndarray]:
  """Errors, shape (configs..., seeds, horizons), of one run per seed read at every horizon.

  ``configs`` is a pytree of arrays with ``config_axes`` leading axes (all of
  the first leaf's axes by default; one run per entry and seed):
  ``make_tx(config)`` builds the method from one entry.
  """

  def run(config, seed):
    return snapshots(problem, horizons, make_tx(config), seed, point)

  fn = jax.vmap(run, in_axes=(None, 0))
  axes = np.ndim(jax.tree.leaves(configs)[0]) if config_axes is None else config_axes
  for _ in range(axes):
    fn = jax.vmap(fn, in_axes=(0, None))
  points = jax.jit(fn)(configs, seeds)
  return errors_of(problem, points, points)


def summary(values: np.ndarray, eta0: float, at_edge: bool) -> Summary:
  """The mean of `values` and the half-width of its 95% interval."""
  half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
  return Summary(float(eta0), float(values.mean()), float(half), at_edge)


def best_index(errors: np.ndarray) -> np.ndarray:
  """The index along axis -2 of the lowest mean over axis -1 (a NaN mean never wins)."""
  return np.nan_to_num(errors.mean(axis=-1), nan=np.inf).argmin(axis=-1)


def at_edge(index: int, grid: Sequence[float]) -> bool:
  return len(grid) > 1 and index in (0, len(grid) - 1)


def run_open_loop(
  problem: Problem, total: int, seeds: int, grid: tuple[float, ...]
) -> tuple[dict[str, dict[str, Summary]], dict[str, dict[str, float]]]:
  """Per measure of error, per open-loop step size: its summary at one horizon.

  Also returns, per measure, the mean error of tuned step decay on the tuning
  seeds (what auto's eta0 is chosen against).
  """
  names = list(unit_schedules(total))
  tune = run_horizon(problem, total, tuning_seeds(seeds), np.tile(grid, (len(names), 1)))
  keys = list(tune)
  chosen = np.stack([best_index(tune[key]) for key in keys], axis=1)  # (schedules, keys)
  eta0s = np.asarray(grid)[chosen]
  report = run_horizon(problem, total, reported_seeds(seeds), eta0s)
  summaries: dict[str, dict[str, Summary]] = {}
  tuned_means: dict[str, dict[str, float]] = {}
  for k, key in enumerate(keys):
    summaries[key] = {
      name: summary(report[key][i, k], eta0s[i, k], at_edge(chosen[i, k], grid))
      for i, name in enumerate(names)
    }
    tuned_means[key] = {
      name: float(tune[key][i, chosen[i, k]].mean()) for i, name in enumerate(names)
    }
  return summaries, tuned_means


def tuned_step_decay_means(
  problem: Problem, horizons: Sequence[int], seeds: int, grid: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
  """Step decay tuned per horizon: its mean errors (last iterate) on the tuning, reported seeds."""
  key = last_iterate_key(problem)
  tune, reported = [], []
  for horizon in horizons:
    summaries, tuned_means = run_open_loop(problem, horizon, seeds, grid)
    tune.append(tuned_means[key][STEP_DECAY])
    reported.append(summaries[key][STEP_DECAY].mean)
  return np.array(tune), np.array(reported)


def choose_auto_eta0(errors: np.ndarray, reference: np.ndarray) -> np.ndarray:
  """Per config, the eta0 index whose worst ratio of mean errors to `reference` is lowest.

  Args:
    errors: (configs..., eta0s, seeds, horizons) errors on the tuning seeds.
    reference: (horizons,) tuned step decay's mean errors on the tuning seeds.
  """
  worst = np.nan_to_num(np.max(errors.mean(axis=-2) / reference, axis=-1), nan=np.inf)
  return worst.argmin(axis=-1)


def run_auto(
  problem: Problem,
  horizons: Sequence[int],
  seeds: int,
  grid: tuple[float, ...],
  reference: np.ndarray,
  variants: Sequence[Mapping[str, Any]] = (AUTO_SETTINGS,),
) -> tuple[dict[str, np.ndarray], np.ndarray]:
  """auto_step_decay variants, one run per seed read at every horizon, eta0 chosen per problem.

  Returns per measure of error the reported seeds' errors, shape (variants,
  seeds, horizons), at the eta0 chosen on the tuning seeds, and the chosen
  eta0 per variant.
  """
  names = sorted({name for variant in variants for name in variant})
  for variant in variants:
    if set(variant) != set(names):
      raise ValueError(f'every variant must set the same arguments {names}, got {variant}')
  values = {
    name: jnp.asarray([np.inf if v[name] is None else v[name] for v in variants]) for name in names
  }
  shape = (len(variants), len(grid))
  configs = {
    'eta0': jnp.broadcast_to(jnp.asarray(grid, jnp.float32), shape),
    **{name: jnp.broadcast_to(v[:, None], shape) for name, v in values.items()},
  }

  def make_tx(config):
    settings = {name: config[name] for name in names}
    return auto_for(config['eta0'], settings)

  key = last_iterate_key(problem)
  tune = run_anytime(problem, horizons, tuning_seeds(seeds), make_tx, configs)
  chosen = choose_auto_eta0(tune[key], reference)  # (variants,)
  picked = jax.tree.map(lambda a: a[np.arange(len(variants)), chosen], configs)
  report = run_anytime(problem, horizons, reported_seeds(seeds), make_tx, picked)
  return report, np.asarray(grid)[chosen]


def run_schedule_free(
  problem: Problem, horizons: Sequence[int], seeds: int, grid: tuple[float, ...]
) -> dict[str, list[Summary]]:
  """Schedule-free SGD, one run per seed read at every horizon, eta0 tuned per horizon."""
  eta0 = jnp.asarray(grid, jnp.float32)
  tune = run_anytime(problem, horizons, tuning_seeds(seeds), schedule_free_for, eta0,
                     schedule_free_point)  # fmt: skip
  report = run_anytime(problem, horizons, reported_seeds(seeds), schedule_free_for, eta0,
                       schedule_free_point)  # fmt: skip
  rows = {}
  for key in tune:
    chosen = best_index(np.moveaxis(tune[key], -1, 0))  # per horizon
    rows[key] = [
      summary(report[key][c, :, h], grid[c], at_edge(c, grid)) for h, c in enumerate(chosen)
    ]
  return rows


def slope(horizons: Sequence[int], values: Sequence[float]) -> float:
  """The least-squares slope of log(values) against log(horizons)."""
  return float(np.polyfit(np.log(horizons), np.log(values), 1)[0])


def run_problem(
  problem: Problem, horizons: Sequence[int], seeds: int, grid: tuple[float, ...]
) -> dict[str, ProblemResult]:
  """Every step size on one problem at every horizon, per measure of error."""
  by_key: dict[str, dict[str, list[Summary]]] = {}
  tuned_step_decay: dict[str, list[float]] = {}
  for horizon in horizons:
    started = time.perf_counter()
    summaries, tuned_means = run_open_loop(problem, horizon, seeds, grid)
    for key, by_schedule in summaries.items():
      tuned_step_decay.setdefault(key, []).append(tuned_means[key][STEP_DECAY])
      for name, summary_ in by_schedule.items():
        by_key.setdefault(key, {}).setdefault(name, []).append(summary_)
    elapsed = time.perf_counter() - started
    print(f'[theory] {problem.name:14s} T={horizon:6d} ({elapsed:.1f}s)', flush=True)
  started = time.perf_counter()
  for key, rows in run_schedule_free(problem, horizons, seeds, grid).items():
    by_key[key][SCHEDULE_FREE] = rows
  reference = np.asarray(tuned_step_decay[last_iterate_key(problem)])
  auto, (eta0,) = run_auto(problem, horizons, seeds, grid, reference)
  for key, errors in auto.items():
    index = grid.index(eta0)
    by_key[key][AUTO] = [summary(errors[0, :, h], eta0, at_edge(index, grid))
                         for h in range(len(horizons))]  # fmt: skip
  elapsed = time.perf_counter() - started
  print(f'[theory] {problem.name:14s} schedule-free and auto ({elapsed:.1f}s)', flush=True)
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
    seeds: The number of seeds per configuration, in each of the two sets.
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

"""How close one step-size sequence can stay to step decay tuned for every horizon, exactly.

Usage:
  python -m benchmarks.anytime --out DIR [--quick]

On the convergence benchmark's least-squares problem, the second moment of
(x - x*, 1) under minibatch SGD evolves by a linear map that depends only on the
step size, and E f(x_T) - f* is linear in it: the expected error of any
sequence of step sizes is computed exactly, without sampling. This answers the
question behind auto_step_decay's ratios in rates.md: could any single
sequence (which is what a rule that does not know T produces) stay within 2 of
step decay tuned for each horizon?

1. Step decay tuned per horizon (the paper's prescription, alpha = 2; eta0 the
   best of the benchmark's grid), at T = 2^10 ... 2^16, eight horizons per octave.
2. The best sequence found: its log step sizes, piecewise constant on 16 blocks
   per octave, minimise the worst ratio to (1) over those horizons (L-BFGS on a
   smoothed maximum).
3. The best staircases eta0 / alpha^k found, their cut times searched one at a
   time on a log grid: alpha = 10 (auto_step_decay's default) and alpha = 2,
   with stages of any length, or of at least five epochs (the shortest stage
   auto_step_decay makes in rates.md, a test every epoch).

4. The best staircase auto_step_decay's defaults allow: its decay factor, a
   first cut no earlier than its second check, each later cut once the count
   has grown by min_growth and no later than by fallback_growth (its
   diagnostic decides where in that band; checks on its grid are treated as
   possible at any update).

(2), (3) and (4) are searches, so each is a ratio some sequence reaches, not a
proof that none does better. Writes DIR/anytime.md, DIR/anytime.png and
DIR/anytime.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

import optax_stepdecay as osd
from benchmarks import runner
from benchmarks.auto_traces import cut_steps
from benchmarks.problems import Problem
from benchmarks.problems import all_problems


@dataclasses.dataclass(frozen=True)
class Settings:
  """Horizons 2^lo ... 2^hi at `per_octave` per octave; the searches' effort."""

  octaves: tuple[int, int]
  per_octave: int
  optimiser_iterations: int
  sweeps: int
  cuts: dict[float, int]


FULL = Settings((10, 16), 8, 400, 3, {10.0: 6, 2.0: 16})
QUICK = Settings((7, 9), 2, 20, 1, {10.0: 2, 2.0: 4})
SMOOTHING = (5.0, 20.0, 100.0, 300.0)  # sharpness of the smoothed maximum, increased in turn
MIN_EPOCHS = 5  # auto_step_decay's shortest stage with a test every epoch (four batch ends)


class Moments(NamedTuple):
  """SGD on least squares as a linear map on the flattened second moment S of (x - x*, 1).

  One step with step size eta maps S to S - eta first(S) + eta^2 second(S), and
  E f(x) - f* = <weights, S>.
  """

  first: jax.Array
  second: jax.Array
  start: jax.Array
  weights: jax.Array


def moments(problem: Problem) -> Moments:
  """The exact second-moment map of the benchmark's SGD (batches drawn with replacement)."""
  x, y = problem.x, problem.y
  n, d = x.shape
  lam = 2 * problem.regulariser(np.ones(1), np)  # the ridge's coefficient
  hessian = x.T @ x / n + lam * np.eye(d)
  w_star = np.linalg.solve(hessian, x.T @ y / n)
  # Example i's gradient at x is H_i (x - x*) + r_i, with E H_i = H and E r_i = 0.
  per_example = x[:, :, None] * x[:, None, :] + lam * np.eye(d)
  # K_i acts on (x - x*, 1); the step is (I - eta K_batch).
  k = np.zeros((n, d + 1, d + 1))
  k[:, :d, :d] = per_example
  k[:, :d, d] = per_example @ w_star - x * y[:, None]
  k_mean, eye = k.mean(0), np.eye(d + 1)
  size = (d + 1) ** 2
  k_outer = np.einsum('iab,icd->acbd', k, k).reshape(size, size) / n
  batch = problem.batch_size
  start = np.outer(np.append(-w_star, 1.0), np.append(-w_star, 1.0))
  weights = np.zeros((d + 1, d + 1))
  weights[:d, :d] = hessian / 2
  return Moments(
    first=jnp.asarray(np.kron(k_mean, eye) + np.kron(eye, k_mean)),
    second=jnp.asarray(k_outer / batch + (1 - 1 / batch) * np.kron(k_mean, k_mean)),
    start=jnp.asarray(start.reshape(-1)),
    weights=jnp.asarray(weights.reshape(-1)),
  )


def expected_errors(model: Moments, step_sizes: jax.Array) -> jax.Array:
  """E f(x_t) - f* after each of the updates with these step sizes."""

  def step(s, eta):
    s = s - eta * (model.first @ s) + eta**2 * (model.second @ s)
    return s, model.weights @ s

  return jax.lax.scan(step, model.start, step_sizes)[1]


def constant_runs(step_sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """A sequence as (values, lengths) of its runs of equal step sizes."""
  starts = np.flatnonzero(np.r_[True, step_sizes[1:] != step_sizes[:-1]])
  return step_sizes[starts], np.diff(np.r_[starts, len(step_sizes)])


def final_error(model: Moments, step_sizes: np.ndarray) -> float:
  """E f(x_T) - f* after a piecewise-constant sequence (a matrix power per run)."""
  s = model.start
  identity = jnp.eye(len(s))
  for eta, length in zip(*constant_runs(step_sizes), strict=True):
    step = identity - eta * model.first + eta**2 * model.second
    s = jnp.linalg.matrix_power(step, int(length)) @ s
  return float(model.weights @ s)


def tuned_step_decay(model: Moments, horizons: list[int]) -> tuple[np.ndarray, list[float]]:
  """Per horizon, the expected error of the paper's step decay at its best eta0, and that eta0."""
  errors, eta0s = [], []
  for total in horizons:
    schedule = osd.fixed_horizon_step_decay_schedule(
      1.0, total_steps=total, decay_factor=runner.ALPHA
    )
    unit = np.asarray(schedule(np.arange(total)), np.float64)
    by_eta0 = {eta0: final_error(model, eta0 * unit) for eta0 in runner.ETA0_GRID}
    best = min(by_eta0, key=lambda eta0: np.nan_to_num(by_eta0[eta0], nan=np.inf))
    errors.append(by_eta0[best])
    eta0s.append(best)
  return np.array(errors), eta0s


def worst_ratio(model: Moments, horizons: list[int], reference: np.ndarray):
  """A jitted function: step sizes [batch, T] -> the worst ratio to `reference` at `horizons`."""
  at = np.array(horizons) - 1

  @jax.jit
  def worst(step_sizes):
    errors = jax.vmap(lambda etas: expected_errors(model, etas)[at])(step_sizes)
    ratios = errors / reference
    # A diverging sequence overflows to inf, NaN or -inf: never the best.
    return jnp.max(jnp.where(jnp.isfinite(ratios) & (ratios > 0), ratios, jnp.inf), axis=-1)

  return worst


def best_sequence(model: Moments, horizons: list[int], reference: np.ndarray, settings: Settings):
  """The sequence whose worst ratio to `reference` is the lowest found."""
  blocks = np.unique(np.r_[0, np.round(2.0 ** np.arange(3, settings.octaves[1], 1 / 16))])
  blocks = blocks.astype(int)
  blocks = blocks[blocks < horizons[-1]]
  block_of = np.searchsorted(blocks, np.arange(horizons[-1]), side='right') - 1
  at = np.array(horizons) - 1

  def smoothed_worst(log_steps, sharpness):
    errors = expected_errors(model, jnp.exp(log_steps)[block_of])[at]
    return jax.nn.logsumexp(sharpness * jnp.log(errors / reference)) / sharpness

  value_and_grad = jax.jit(jax.value_and_grad(smoothed_worst), static_argnums=1)
  log_steps = np.log(np.minimum(0.3, 600.0 / np.maximum(blocks, 1)))
  for sharpness in SMOOTHING:

    def objective(v, sharpness=sharpness):
      return [np.asarray(a, np.float64) for a in value_and_grad(jnp.asarray(v), sharpness)]

    result = scipy.optimize.minimize(
      objective,
      log_steps, jac=True, method='L-BFGS-B', bounds=[(np.log(1e-7), np.log(0.6))] * len(blocks),
      options={'maxiter': settings.optimiser_iterations},
    )  # fmt: skip
    log_steps = result.x
  return np.exp(log_steps)[block_of]


def staircase(cuts: np.ndarray, eta0: float, alpha: float, total: int) -> np.ndarray:
  """eta0 / alpha^k, where k counts the cuts at or before each update."""
  return eta0 / alpha ** np.searchsorted(np.sort(cuts), np.arange(total), side='right')


def best_staircase(
  worst, guide: np.ndarray, eta0: float, alpha: float, settings: Settings, min_stage: int
) -> np.ndarray:
  """The cut times with the lowest worst ratio found.

  The search starts where the sequence `guide` crosses eta0 / alpha^(k + 1/2)
  and moves one cut at a time to the best point of a log grid. A cut at T is
  no cut; the others are at least `min_stage` apart.
  """
  total = len(guide)
  candidates = np.r_[np.unique(np.geomspace(min_stage, total - 1, 65).astype(int)), total]
  levels = eta0 / alpha ** (np.arange(settings.cuts[alpha]) + 0.5)
  cuts = np.array([np.argmax(np.r_[guide, 0.0] <= level) for level in levels])
  cuts = np.maximum(cuts, min_stage)
  for i in range(1, len(cuts)):
    cuts[i] = max(cuts[i], cuts[i - 1] + min_stage)
  cuts = np.minimum(cuts, total)

  def score(options: list[np.ndarray]) -> np.ndarray:
    made = [np.sort(c[c < total]) for c in options]
    valid = [np.all(np.diff(np.r_[0, c]) >= min_stage) for c in made]
    values = np.asarray(worst(jnp.asarray(np.stack([staircase(c, eta0, alpha, total)
                                                    for c in made]))))  # fmt: skip
    return np.where(valid, values, np.inf)

  best = float(score([cuts])[0])
  for _ in range(settings.sweeps):
    for i in range(len(cuts)):
      options = [np.r_[cuts[:i], t, cuts[i + 1 :]] for t in candidates]
      values = score(options)
      if values.min() < best:
        best, cuts = float(values.min()), np.sort(options[int(values.argmin())])
  return cuts[cuts < total]


def in_family(cuts: np.ndarray, total: int, first: int, growth: tuple[float, float]) -> bool:
  """Whether auto_step_decay's bounds allow these cut times (updates after which it cuts).

  The first cut comes at ``first`` or later; each later one once the count has
  grown by at least ``growth[0]`` and at most ``growth[1]`` since the one
  before (the fallback), so also the horizon may not lie beyond ``growth[1]``
  times the last cut.
  """
  if len(cuts) == 0:
    return True
  ratios = np.r_[cuts[1:], total] / cuts
  return bool(cuts[0] >= first and np.all(ratios[:-1] >= growth[0] - 1e-9)
              and np.all(ratios <= growth[1] + 1e-9))  # fmt: skip


def family_bounds() -> tuple[float, int, tuple[float, float]]:
  """auto_step_decay's decay factor, earliest first cut and growth band between cuts."""
  defaults = inspect.signature(osd.auto_step_decay).parameters
  first = math.ceil(defaults['first_check'].default * defaults['check_growth'].default)
  growth = (defaults['min_growth'].default, defaults['fallback_growth'].default)
  return defaults['decay_factor'].default, first, growth


def best_family_staircase(
  worst, total: int, alpha: float, first: int, growth: tuple[float, float]
) -> tuple[float, np.ndarray]:
  """The eta0 and cut times within auto_step_decay's bounds with the lowest worst ratio found.

  Starts from the best geometric sequence start * r^k (r in ``growth``, eta0
  on the benchmark's grid), then moves each cut in turn to the best allowed
  point of a log grid (one sweep).
  """
  options = []
  for eta0 in runner.ETA0_GRID:
    for start in np.unique(np.geomspace(first, max(first, total / 4), 12).astype(int)):
      for r in np.linspace(growth[0], growth[1], 5):
        count = int(np.log(total / start) / np.log(r)) + 1
        cuts = np.unique(np.ceil(start * r ** np.arange(count)).astype(int))
        if in_family(cuts[cuts < total], total, first, growth):
          options.append((eta0, cuts[cuts < total]))
  values = np.asarray(worst(jnp.asarray(np.stack(
    [staircase(c, eta0, alpha, total) for eta0, c in options]))))  # fmt: skip
  values = np.where(np.isnan(values), np.inf, values)
  eta0, cuts = options[int(values.argmin())]
  best = float(values.min())
  grid = np.unique(np.geomspace(first, total - 1, 65).astype(int))
  for _ in range(1):  # one sweep: the start is already a good staircase of the family
    for i in range(len(cuts)):
      moves = [np.sort(np.r_[cuts[:i], t, cuts[i + 1 :]]) for t in grid]
      moves = [m for m in moves if len(np.unique(m)) == len(m) and in_family(m, total, first,
                                                                              growth)]  # fmt: skip
      if not moves:
        continue
      scores = np.asarray(worst(jnp.asarray(np.stack(
        [staircase(m, eta0, alpha, total) for m in moves]))))  # fmt: skip
      scores = np.where(np.isnan(scores), np.inf, scores)  # a diverging staircase
      if scores.min() < best:
        best, cuts = float(scores.min()), moves[int(scores.argmin())]
  return eta0, cuts


@dataclasses.dataclass(frozen=True)
class Candidate:
  """One sequence for all horizons: its step sizes and its ratio to tuned step decay at each."""

  name: str
  step_sizes: np.ndarray
  ratios: np.ndarray


@dataclasses.dataclass(frozen=True)
class Results:
  command: str
  horizons: list[int]
  step_decay_errors: np.ndarray
  step_decay_eta0: list[float]
  candidates: list[Candidate]
  min_stage: int
  elapsed_s: float


def run(settings: Settings, command: str) -> Results:
  """Tuned step decay, then the best sequence and the best staircases against it."""
  started = time.perf_counter()
  problem = next(p for p in all_problems() if p.name == 'least_squares')
  model = moments(problem)
  lo, hi = (octave * settings.per_octave for octave in settings.octaves)
  horizons = sorted({round(2 ** (k / settings.per_octave)) for k in range(lo, hi + 1)})
  reference, eta0s = tuned_step_decay(model, horizons)
  worst = worst_ratio(model, horizons, reference)
  at = np.array(horizons) - 1
  eta0 = max(set(eta0s), key=eta0s.count)
  min_stage = MIN_EPOCHS * (len(problem.y) // problem.batch_size)

  def candidate(name: str, step_sizes: np.ndarray) -> Candidate:
    errors = np.asarray(expected_errors(model, jnp.asarray(step_sizes)))[at]
    return Candidate(name, step_sizes, errors / reference)

  best = best_sequence(model, horizons, reference, settings)
  candidates = [candidate('best sequence found', best)]
  family_alpha, first, growth = family_bounds()
  family_eta0, cuts = best_family_staircase(worst, horizons[-1], family_alpha, first, growth)
  candidates.append(candidate(
    f"auto_step_decay's family: eta0 = {family_eta0:g}, alpha = {family_alpha:g}, first cut "
    f'>= {first}, each after the count grew by {growth[0]:g} to {growth[1]:g}',
    staircase(cuts, family_eta0, family_alpha, horizons[-1])))  # fmt: skip
  for alpha in sorted(settings.cuts, reverse=True):
    for shortest, label in ((1, 'stages of any length'), (min_stage, f'stages >= {min_stage}')):
      cuts = best_staircase(worst, best, eta0, alpha, settings, shortest)
      name = f'staircase eta0 = {eta0:g}, alpha = {alpha:g}, {label}'
      candidates.append(candidate(name, staircase(cuts, eta0, alpha, horizons[-1])))
  return Results(command, horizons, reference, eta0s, candidates, min_stage,
                 time.perf_counter() - started)  # fmt: skip


def markdown(results: Results) -> str:
  """The ratios at the benchmark's horizons (powers of 2) and the worst over all horizons."""
  powers = [i for i, t in enumerate(results.horizons) if t & (t - 1) == 0]
  lines = [
    '# One sequence for every horizon: how close to tuned step decay can it stay?',
    '',
    f'Command: `{results.command}` ({results.elapsed_s:.0f} s). Exact expected errors '
    "(no sampling) of minibatch SGD on the convergence benchmark's least-squares problem. "
    "Ratio: E f(x_T) - f* of the sequence over that of step decay tuned for T (the paper's "
    f"prescription, alpha = {runner.ALPHA:g}, eta0 the best of the benchmark's grid); worst over "
    f'{len(results.horizons)} horizons from {results.horizons[0]} to {results.horizons[-1]}. '
    'Searches: each ratio is reached by the sequence shown; a better one may exist.',
    '',
    '| sequence | worst ratio | ' + ' | '.join(f'T={results.horizons[i]}' for i in powers) + ' |',
    '|---|---:|' + '---:|' * len(powers),
  ]
  for c in results.candidates:
    lines.append(f'| {c.name} | {c.ratios.max():.2f} | '
                 + ' | '.join(f'{c.ratios[i]:.2f}' for i in powers) + ' |')  # fmt: skip
  lines += ['', 'Cut points of the staircases (updates after which the step size falls):', '']
  for c in results.candidates[1:]:
    lines.append(f'- {c.name}: {cut_steps(c.step_sizes)}')
  lines += [
    '',
    'Tuned step decay: ' + ', '.join(
      f'T={results.horizons[i]}: {results.step_decay_errors[i]:.3g} (eta0 '
      f'{results.step_decay_eta0[i]:g})' for i in powers) + '.',
  ]  # fmt: skip
  return '\n'.join(lines) + '\n'


def plot(results: Results, path: Path) -> None:
  """Step sizes of every candidate, and their ratios over the horizons."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, (left, right) = plt.subplots(1, 2, figsize=(14, 4.8))
  steps = np.arange(1, results.horizons[-1] + 1)
  for c in results.candidates:
    left.plot(steps, c.step_sizes, label=c.name, lw=1)
    right.plot(results.horizons, c.ratios, '.-', label=c.name, lw=1)
  right.axhline(2.0, color='k', ls=':', lw=1)
  left.set(xscale='log', yscale='log', xlabel='update', ylabel='step size',
           title='one sequence for every horizon')  # fmt: skip
  right.set(xscale='log', yscale='log', xlabel='horizon T',
            title='E error over that of step decay tuned for T')  # fmt: skip
  left.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv: list[str] | None = None) -> Results:
  """Runs the searches, writes DIR/anytime.md, .png and .json, prints the table."""
  parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True)
  parser.add_argument('--quick', action='store_true', help='short horizons, short searches')
  args = parser.parse_args(argv)
  quick = ' --quick' if args.quick else ''
  previous = jax.config.read('jax_enable_x64')
  jax.config.update('jax_enable_x64', True)  # the moments of a 1e-5 error need float64
  try:
    results = run(QUICK if args.quick else FULL,
                  f'python -m benchmarks.anytime{quick} --out {args.out}')  # fmt: skip
  finally:
    jax.config.update('jax_enable_x64', previous)
  args.out.mkdir(parents=True, exist_ok=True)
  text = markdown(results)
  (args.out / 'anytime.md').write_text(text)
  plot(results, args.out / 'anytime.png')
  summary = {
    'command': results.command,
    'horizons': results.horizons,
    'step_decay': {'errors': results.step_decay_errors.tolist(), 'eta0': results.step_decay_eta0},
    'candidates': {
      c.name: {'ratios': c.ratios.tolist(), 'cuts': cut_steps(c.step_sizes)}
      for c in results.candidates[1:]
    },
    'best_sequence_ratios': results.candidates[0].ratios.tolist(),
  }
  (args.out / 'anytime.json').write_text(json.dumps(summary, indent=1))
  print(text)
  return results


if __name__ == '__main__':
  main()

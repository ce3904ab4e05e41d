"""Measure the convergence rates of step decay and other step sizes against the paper's.

Usage:
  python benchmarks/theory.py --out DIR [--quick]

For every problem, horizon T and step size, SGD runs from the same start for
T steps on every seed; the step size's eta0 is tuned per horizon on a grid
(the best mean final error over the seeds; the grid is in the output). All
(schedule x eta0 x seed) runs of one problem and horizon are a single vmapped
program. Writes DIR/rates.md (tables, fitted log-log slopes beside the paper's
rates) and DIR/rates.png (error against T), plus DIR/rates.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy import optimize
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

import optax_stepdecay as osd

# ---------------------------------------------------------------------------- problems


def _design(x: np.ndarray) -> np.ndarray:
  return np.hstack([StandardScaler().fit_transform(x), np.ones((len(x), 1))])


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
  data = datasets.load_breast_cancer()
  return _design(data.data), 2.0 * data.target - 1.0  # labels +-1


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
  data = datasets.load_diabetes()
  return _design(data.data), (data.target - data.target.mean()) / data.target.std()


@dataclasses.dataclass(frozen=True)
class Problem:
  """f(w) = mean_i loss(w, x_i, y_i) + regulariser(w), optionally on a ball of radius `radius`."""

  name: str
  paper_rate: str
  rate: Callable[[np.ndarray], np.ndarray]  # the paper's rate as a function of T
  x: np.ndarray
  y: np.ndarray
  loss: Callable  # (w, x, y) -> per-example losses, in jnp (float32) or np (float64)
  regulariser: Callable  # w -> float
  f_star: float | None = None  # None: non-convex, measured by the gradient norm
  radius: float | None = None
  batch_size: int = 8

  def objective(self, w, xp=np):
    return xp.mean(self.loss(w, self.x, self.y, xp)) + self.regulariser(w, xp)


def _logistic_loss(w, x, y, xp):
  return xp.logaddexp(0.0, -y * (x @ w))


def _squared_loss(w, x, y, xp):
  return 0.5 * (x @ w - y) ** 2


def _absolute_loss(w, x, y, xp):
  return xp.abs(x @ w - y)


def _hinge_loss(w, x, y, xp):
  return xp.maximum(0.0, 1.0 - y * (x @ w))


def _ridge(lam):
  return lambda w, xp: 0.5 * lam * xp.sum(w**2)


def _nonconvex_penalty(lam):  # lam * sum w^2 / (1 + w^2): smooth, non-convex
  return lambda w, xp: lam * xp.sum(w**2 / (1 + w**2))


def logistic_f_star(x, y, lam) -> float:
  """Newton's method in float64: f* to machine precision."""
  w = np.zeros(x.shape[1])
  for _ in range(50):
    p = 1 / (1 + np.exp(y * (x @ w)))  # sigma(-y w.x)
    grad = -(x.T @ (y * p)) / len(y) + lam * w
    hessian = (x.T * (p * (1 - p))) @ x / len(y) + lam * np.eye(x.shape[1])
    w -= np.linalg.solve(hessian, grad)
  return float(np.mean(np.logaddexp(0, -y * (x @ w))) + 0.5 * lam * w @ w)


def ridge_f_star(x, y, lam) -> float:
  w = np.linalg.solve(x.T @ x / len(y) + lam * np.eye(x.shape[1]), x.T @ y / len(y))
  return float(np.mean(0.5 * (x @ w - y) ** 2) + 0.5 * lam * w @ w)


def lad_solution(x, y) -> tuple[float, np.ndarray]:
  """Least absolute deviations as a linear program (HiGHS): exact f* and w*."""
  n, d = x.shape
  cost = np.concatenate([np.zeros(d), np.ones(n) / n])
  # x w - t <= y and -x w - t <= -y
  a_ub = np.block([[x, -np.eye(n)], [-x, -np.eye(n)]])
  b_ub = np.concatenate([y, -y])
  bounds = [(None, None)] * d + [(0, None)] * n
  result = optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method='highs')
  return float(result.fun), result.x[:d]


def hinge_f_star(x, y, lam) -> float:
  """The SVM dual (a box-constrained concave quadratic) by L-BFGS-B; checks the duality gap."""
  n = len(y)
  z = x * y[:, None]

  def negative_dual(alpha):
    v = z.T @ alpha
    return -(alpha.sum() - v @ v / (2 * lam)), -(1 - z @ v / lam)

  result = optimize.minimize(
    negative_dual, np.full(n, 0.5 / n), jac=True, method='L-BFGS-B', bounds=[(0, 1 / n)] * n,
    options={'maxiter': 100_000, 'ftol': 1e-15, 'gtol': 1e-12},
  )  # fmt: skip
  w = z.T @ result.x / lam
  primal = float(np.mean(np.maximum(0, 1 - z @ w)) + 0.5 * lam * w @ w)
  gap = primal + result.fun
  if gap > 1e-7:
    raise RuntimeError(f'hinge f* not accurate: duality gap {gap:.2e}')
  return primal


def log_rate(power: float, log_power: float) -> Callable[[np.ndarray], np.ndarray]:
  return lambda t: np.log(t) ** log_power / t**power


ETA0_GRID = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def problems() -> list[Problem]:
  xb, yb = _breast_cancer()
  xd, yd = _diabetes()
  lam = 1e-2
  lad_star, w_lad = lad_solution(xd, yd)
  return [
    # smooth strongly convex: l2-logistic regression (breast cancer)
    Problem('logistic', 'O(ln T / T)', log_rate(1, 1), xb, yb, _logistic_loss, _ridge(lam),
            logistic_f_star(xb, yb, lam)),
    # smooth strongly convex: noisy least squares + 1e-2 ridge (diabetes)
    Problem('least_squares', 'O(ln T / T)', log_rate(1, 1), xd, yd, _squared_loss, _ridge(lam),
            ridge_f_star(xd, yd, lam)),
    # convex non-smooth: least absolute deviations on a ball (diabetes)
    Problem('lad', 'O(ln T / sqrt T)', log_rate(0.5, 1), xd, yd, _absolute_loss,
            lambda w, xp: 0.0, lad_star, radius=2 * float(np.linalg.norm(w_lad))),
    # strongly convex non-smooth: l2-regularised hinge loss (breast cancer)
    Problem('hinge', 'O(ln^2 T / T)', log_rate(1, 2), xb, yb, _hinge_loss, _ridge(lam),
            hinge_f_star(xb, yb, lam)),
    # non-convex smooth: logistic loss + 0.1 sum w^2/(1+w^2) (breast cancer)
    Problem('nonconvex', 'O(ln T / sqrt T)', log_rate(0.5, 1), xb, yb, _logistic_loss,
            _nonconvex_penalty(0.1)),
  ]  # fmt: skip


# --------------------------------------------------------------------------- schedules

ALPHA = 2.0
INV_T0 = 64  # inv_t and inv_sqrt_t: eta0 / (1 + t / 64), eta0 / (1 + sqrt(t / 64))
EXP_B = 10.0  # exponential: eta0 * (b / T)^(t / T)
HAZAN_KALE_FIRST = 16  # geometric: stage k lasts 16 * 2^k steps at eta0 / 2^k


def unit_schedules(total: int) -> dict[str, Callable]:
  """Every step size with eta0 = 1, for a horizon of `total` steps."""
  beta = (EXP_B / total) ** (1 / total)
  return {
    'step_decay': osd.fixed_horizon_step_decay_schedule(1.0, total, ALPHA),
    'constant': lambda t: jnp.ones_like(t, jnp.float32),
    'inv_t': lambda t: 1 / (1 + t / INV_T0),
    'inv_sqrt_t': lambda t: 1 / (1 + jnp.sqrt(t / INV_T0)),
    'exponential': lambda t: beta**t,
    'cosine': lambda t: 0.5 * (1 + jnp.cos(jnp.pi * t / total)),
    'geometric': osd.geometric_stage_decay_schedule(1.0, HAZAN_KALE_FIRST, 2.0, 2.0),
  }


# ------------------------------------------------------------------------------- runs


def simulate(problem: Problem, total: int, tx, seed) -> tuple[jax.Array, jax.Array]:
  """T steps of minibatch SGD (projected onto the problem's ball) with updates from tx.

  Returns the last iterate and the output point: the iterate kept by an
  ``osd.sample_iterate`` in tx, or the last one when there is none.
  """
  x, y = jnp.asarray(problem.x, jnp.float32), jnp.asarray(problem.y, jnp.float32)
  n, d = problem.x.shape
  key = jax.random.PRNGKey(seed)

  def minibatch_objective(w, idx):
    return jnp.mean(problem.loss(w, x[idx], y[idx], jnp)) + problem.regulariser(w, jnp)

  def step(carry, t):
    w, state = carry
    idx = jax.random.randint(jax.random.fold_in(key, t), (problem.batch_size,), 0, n)
    update, state = tx.update(jax.grad(minibatch_objective)(w, idx), state, w)
    w = w + update
    if problem.radius is not None:
      w = w * jnp.minimum(1.0, problem.radius / jnp.linalg.norm(w))
    return (w, state), None

  w0 = jnp.zeros(d)
  (w, state), _ = jax.lax.scan(step, (w0, tx.init(w0)), jnp.arange(total))
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
    return {'nonconvex': np.asarray(norms(output), np.float64),
            'nonconvex_last_iterate': np.asarray(norms(last), np.float64)}  # fmt: skip
  finals = np.asarray(last, np.float64)
  values = np.array([problem.objective(w) for w in finals.reshape(-1, finals.shape[-1])])
  return {problem.name: np.maximum(values.reshape(finals.shape[:-1]) - problem.f_star, 1e-16)}


def run_horizon(problem: Problem, total: int, seeds: int, grid: tuple[float, ...]) -> dict:
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


def run_auto(problem: Problem, total: int, seeds: int, eta0: float) -> dict:
  """auto_step_decay, untuned (library defaults; tests every epoch), from step decay's eta0."""
  epoch = len(problem.y) // problem.batch_size
  tx = osd.auto_step_decay(eta0, test_interval=epoch, min_stage_length=2 * epoch)
  last, output = jax.jit(jax.vmap(lambda seed: simulate(problem, total, tx, seed)))(
    jnp.arange(seeds)
  )
  return errors_of(problem, last[None, None], output[None, None])


def summarise(errors: np.ndarray, grid: tuple[float, ...]) -> dict:
  """Per schedule: the eta0 with the lowest mean error, its mean and 95% interval."""
  mean = np.nan_to_num(errors.mean(axis=2), nan=np.inf)  # (schedules, grid)
  best = mean.argmin(axis=1)
  rows = []
  for s, b in enumerate(best):
    values = errors[s, b]
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    rows.append({'eta0': grid[b], 'mean': float(values.mean()), 'ci95': float(half),
                 'at_grid_edge': len(grid) > 1 and b in (0, len(grid) - 1)})  # fmt: skip
  return rows


def slope(horizons: list[int], values: list[float]) -> float:
  return float(np.polyfit(np.log(horizons), np.log(values), 1)[0])


# ----------------------------------------------------------------------------- report

DISPLAY = {
  'logistic': ('logistic', 'smooth strongly convex'),
  'least_squares': ('least squares', 'smooth strongly convex'),
  'lad': ('least absolute deviations', 'convex non-smooth'),
  'hinge': ('hinge + l2', 'strongly convex non-smooth'),
  'nonconvex': ('non-convex, iterate sampled with p ~ 1/eta_t', 'non-convex smooth'),
  'nonconvex_last_iterate': ('non-convex, last iterate', 'non-convex smooth'),
}


AUTO_VS_STEP = ('auto', 'step_decay')


def markdown(results: dict) -> str:
  lines = [
    '# Convergence rates: step decay against other step sizes',
    '',
    f'Command: `{results["command"]}` ({results["elapsed_s"]:.0f} s). '
    f'{results["seeds"]} seeds, horizons T = {", ".join(map(str, results["horizons"]))}. '
    'Error: f(x_T) - f* for the convex problems (last iterate; f* from float64 solvers), '
    'the full-batch |grad f|^2 for the non-convex one. eta0 tuned per horizon on the grid '
    'shown (lowest mean error over the same seeds); * marks an eta0 at the edge of the grid. '
    f"Step decay: the paper's prescription, N = floor(log_{ALPHA:g} T) stages of T // N steps; "
    f'inv_t / inv_sqrt_t: eta0 / (1 + t/{INV_T0}), eta0 / (1 + sqrt(t/{INV_T0})); exponential: '
    f'eta0 (b/T)^(t/T), b = {EXP_B:g}; geometric: Hazan-Kale, {HAZAN_KALE_FIRST} * 2^k steps at '
    'eta0 / 2^k. auto: auto_step_decay given no horizon and no tuning (library defaults: '
    'decay 10, confidence 0.95, tolerance 0.5; a test every epoch, stages of at least two '
    "epochs), started from step decay's tuned eta0; its output is its last iterate.",
    '',
    '## Fitted log-log slopes (error ~ T^slope)',
    '',
    '| problem | setting | paper rate | paper rate as a slope here | '
    + ' | '.join(results['schedules'])
    + ' |',
    '|---|---|---|---:|' + '---:|' * len(results['schedules']),
  ]
  for key, problem in results['problems'].items():
    label, setting = DISPLAY[key]
    slopes = ' | '.join(f'{problem["slopes"][s]:.2f}' for s in results['schedules'])
    lines.append(f'| {label} | {setting} | {problem["paper_rate"]} | '
                 f'{problem["paper_slope"]:.2f} | {slopes} |')  # fmt: skip
  lines += ['', '## auto against tuned step decay: ratio of mean errors', '',
            '| problem | ' + ' | '.join(f'T={h}' for h in results['horizons']) + ' |',
            '|---|' + '---:|' * len(results['horizons'])]  # fmt: skip
  for key, problem in results['problems'].items():
    auto, step_decay = (problem['rows'][s] for s in AUTO_VS_STEP)
    ratios = [a['mean'] / b['mean'] for a, b in zip(auto, step_decay, strict=True)]
    lines.append(f'| {DISPLAY[key][0]} | ' + ' | '.join(f'{r:.2f}' for r in ratios) + ' |')
  for key, problem in results['problems'].items():
    label, _ = DISPLAY[key]
    lines += ['', f'## {label}: mean error ± 95% interval (eta0)', '',
              f'eta0 grid: {problem["eta0_grid"]}', '',
              '| T | ' + ' | '.join(results['schedules']) + ' |',
              '|---:|' + '---:|' * len(results['schedules'])]  # fmt: skip
    for i, horizon in enumerate(results['horizons']):
      cells = []
      for s in results['schedules']:
        row = problem['rows'][s][i]
        edge = '*' if row['at_grid_edge'] else ''
        cells.append(f'{row["mean"]:.3g} ± {row["ci95"]:.2g} ({row["eta0"]:g}{edge})')
      lines.append(f'| {horizon} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def plot(results: dict, path: Path) -> None:
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  keys = list(results['problems'])
  fig, axes = plt.subplots(2, 3, figsize=(16, 9))
  horizons = np.array(results['horizons'])
  for ax, key in zip(axes.flat, keys, strict=False):
    problem = results['problems'][key]
    for s in results['schedules']:
      rows = problem['rows'][s]
      means = np.array([r['mean'] for r in rows])
      style = dict(lw=2.5) if s == 'step_decay' else dict(lw=1, alpha=0.8)
      half = np.array([r['ci95'] for r in rows])
      lower = np.minimum(half, 0.9 * means)  # keep the bar on a log axis
      ax.errorbar(horizons, means, yerr=[lower, half], label=s, capsize=2, **style)
    reference = problem['rate_values']
    anchor = problem['rows']['step_decay'][0]['mean'] / reference[0]
    ax.plot(horizons, anchor * np.array(reference), 'k--', label=f'paper: {problem["paper_rate"]}')
    ax.set(xscale='log', yscale='log', xlabel='T', title=DISPLAY[key][0])
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(keys) :]:
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True)
  parser.add_argument('--quick', action='store_true', help='3 small horizons, 4 seeds: seconds')
  args = parser.parse_args(argv)
  started = time.perf_counter()
  horizons = [2**k for k in (range(7, 10) if args.quick else range(10, 17))]
  seeds = 4 if args.quick else 16
  command = (
    'python benchmarks/theory.py' + (' --quick' if args.quick else '') + f' --out {args.out}'
  )
  results: dict = {
    'command': command,
    'horizons': horizons,
    'seeds': seeds,
    'schedules': [*unit_schedules(2), 'auto'],
    'problems': {},
  }
  for problem in problems():
    grid = ETA0_GRID[1::2] if args.quick else ETA0_GRID
    per_key: dict = {}
    for horizon in horizons:
      t0 = time.perf_counter()
      for key, errors in run_horizon(problem, horizon, seeds, grid).items():
        rows = summarise(errors, grid)
        per_key.setdefault(key, []).append(rows)
      step_decay_eta0 = rows[results['schedules'].index('step_decay')]['eta0']
      for key, errors in run_auto(problem, horizon, seeds, step_decay_eta0).items():
        per_key[key][-1] = per_key[key][-1] + summarise(errors, (step_decay_eta0,))
      print(
        f'[theory] {problem.name:14s} T={horizon:6d} ({time.perf_counter() - t0:.1f}s)', flush=True
      )
    rate_values = problem.rate(np.array(horizons, np.float64))
    for key, by_horizon in per_key.items():
      rows = {s: [h[i] for h in by_horizon] for i, s in enumerate(results['schedules'])}
      results['problems'][key] = {
        'paper_rate': problem.paper_rate,
        'paper_slope': slope(horizons, list(rate_values)),
        'rate_values': list(rate_values),
        'eta0_grid': list(grid),
        'rows': rows,
        'slopes': {s: slope(horizons, [r['mean'] for r in rows[s]]) for s in rows},
      }
  results['elapsed_s'] = time.perf_counter() - started
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'rates.json').write_text(json.dumps(results, indent=1))
  (args.out / 'rates.md').write_text(markdown(results))
  plot(results, args.out / 'rates.png')
  print(markdown(results))
  return results


if __name__ == '__main__':
  main()

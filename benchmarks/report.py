"""The convergence benchmark's results as markdown tables, a figure and JSON."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np

import optax_stepdecay as osd
from benchmarks.runner import ALPHA
from benchmarks.runner import AUTO
from benchmarks.runner import EXP_B
from benchmarks.runner import HAZAN_KALE_FIRST
from benchmarks.runner import INV_T0
from benchmarks.runner import SCHEDULE_FREE
from benchmarks.runner import STEP_DECAY
from benchmarks.runner import ProblemResult
from benchmarks.runner import Results

# Per measure of error: its label in the tables and its class of problem.
DISPLAY = {
  'logistic': ('logistic', 'smooth strongly convex'),
  'least_squares': ('least squares', 'smooth strongly convex'),
  'lad': ('least absolute deviations', 'convex non-smooth'),
  'hinge': ('hinge + l2', 'strongly convex non-smooth'),
  'nonconvex': ('non-convex, iterate sampled with p ~ 1/eta_t', 'non-convex smooth'),
  'nonconvex_last_iterate': ('non-convex, last iterate', 'non-convex smooth'),
}

# auto_step_decay's arguments the report states the defaults of, with their names in it.
AUTO_DEFAULTS = (
  ('decay_factor', 'decay'),
  ('first_check', 'first check'),
  ('check_growth', 'check growth'),
  ('slope_threshold', 'slope threshold'),
  ('min_growth', 'min growth'),
  ('fallback_growth', 'fallback growth'),
)


def auto_defaults() -> str:
  """auto_step_decay's default settings, as the library defines them."""
  parameters = inspect.signature(osd.auto_step_decay).parameters
  return ', '.join(f'{label} {parameters[name].default:g}' for name, label in AUTO_DEFAULTS)


def _header(results: Results) -> list[str]:
  return [
    '# Convergence rates: step decay against other step sizes',
    '',
    f'Command: `{results.command}` ({results.elapsed_s:.0f} s). '
    f'{results.seeds} seeds, horizons T = {", ".join(map(str, results.horizons))}. '
    'Error: f(x_T) - f* for the convex problems (last iterate; f* from float64 solvers), '
    'the full-batch |grad f|^2 for the non-convex one. Tuning: every eta0 is chosen on '
    f'{results.seeds} tuning seeds and the errors shown are fresh runs on {results.seeds} other '
    "seeds (no winner's curse); eta0 tuned per horizon on the grid shown (the lowest mean error "
    'on the tuning seeds); * marks an eta0 at the edge of the grid. '
    f"Step decay: the paper's prescription, N = floor(log_{ALPHA:g} T) stages of T // N steps; "
    f'inv_t / inv_sqrt_t: eta0 / (1 + t/{INV_T0}), eta0 / (1 + sqrt(t/{INV_T0})); exponential: '
    f'eta0 (b/T)^(t/T), b = {EXP_B:g}; geometric: Hazan-Kale, {HAZAN_KALE_FIRST} * 2^k steps at '
    f'eta0 / 2^k. schedule_free: optax.contrib.schedule_free_sgd (b1 0.9, no warmup), one run '
    'per seed to the longest horizon read at every horizon at its averaged point '
    '(schedule_free_eval_params), eta0 tuned per horizon like the others. auto: '
    f'auto_step_decay with the library defaults ({auto_defaults()}), never told T: one run per '
    'seed to the longest horizon, read at every horizon; one eta0 per problem, the one whose '
    'worst ratio to tuned step decay over the horizons is lowest on the tuning seeds; its '
    'output is its last iterate at every horizon (so also in the row of the non-convex problem '
    "that samples the other methods' iterate).",
  ]


def _slopes_table(results: Results) -> list[str]:
  lines = [
    '## Fitted log-log slopes (error ~ T^slope)',
    '',
    '| problem | setting | paper rate | paper rate as a slope here | '
    + ' | '.join(results.schedules)
    + ' |',
    '|---|---|---|---:|' + '---:|' * len(results.schedules),
  ]
  for key, problem in results.problems.items():
    label, setting = DISPLAY[key]
    slopes = ' | '.join(f'{problem.slopes[s]:.2f}' for s in results.schedules)
    lines.append(
      f'| {label} | {setting} | {problem.paper_rate} | {problem.paper_slope:.2f} | {slopes} |'
    )
  return lines


def _auto_table(results: Results) -> list[str]:
  """Ratios of mean errors to tuned step decay: auto, then schedule-free SGD."""
  lines = []
  for schedule, title in ((AUTO, 'auto'), (SCHEDULE_FREE, 'schedule-free SGD')):
    lines += [
      f'## {title} against tuned step decay: ratio of mean errors',
      '',
      '| problem | ' + ' | '.join(f'T={h}' for h in results.horizons) + ' |',
      '|---|' + '---:|' * len(results.horizons),
    ]
    for key, problem in results.problems.items():
      pairs = zip(problem.rows[schedule], problem.rows[STEP_DECAY], strict=True)
      ratios = ' | '.join(f'{row.mean / step_decay.mean:.2f}' for row, step_decay in pairs)
      lines.append(f'| {DISPLAY[key][0]} | {ratios} |')
    lines.append('')
  return lines[:-1]


def _errors_table(results: Results, key: str, problem: ProblemResult) -> list[str]:
  lines = [
    f'## {DISPLAY[key][0]}: mean error ± 95% interval (eta0)',
    '',
    f'eta0 grid: {problem.eta0_grid}',
    '',
    '| T | ' + ' | '.join(results.schedules) + ' |',
    '|---:|' + '---:|' * len(results.schedules),
  ]
  for i, horizon in enumerate(results.horizons):
    cells = []
    for name in results.schedules:
      summary = problem.rows[name][i]
      edge = '*' if summary.at_grid_edge else ''
      cells.append(f'{summary.mean:.3g} ± {summary.ci95:.2g} ({summary.eta0:g}{edge})')
    lines.append(f'| {horizon} | ' + ' | '.join(cells) + ' |')
  return lines


def markdown(results: Results) -> str:
  """The report: the protocol, the fitted slopes, auto against step decay, every error."""
  sections = [_header(results), _slopes_table(results), _auto_table(results)]
  sections += [_errors_table(results, key, p) for key, p in results.problems.items()]
  return '\n\n'.join('\n'.join(section) for section in sections) + '\n'


def plot(results: Results, path: Path) -> None:
  """Mean error against T, one panel per measure of error, with the paper's rate dashed."""
  import matplotlib

  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(2, 3, figsize=(16, 9))
  horizons = np.array(results.horizons)
  for ax, (key, problem) in zip(axes.flat, results.problems.items(), strict=False):
    for name in results.schedules:
      summaries = problem.rows[name]
      means = np.array([s.mean for s in summaries])
      style = dict(lw=2.5) if name == STEP_DECAY else dict(lw=1, alpha=0.8)
      half = np.array([s.ci95 for s in summaries])
      lower = np.minimum(half, 0.9 * means)  # keep the bar on a log axis
      ax.errorbar(horizons, means, yerr=[lower, half], label=name, capsize=2, **style)
    reference = problem.rate_values
    anchor = problem.rows[STEP_DECAY][0].mean / reference[0]
    ax.plot(horizons, anchor * np.array(reference), 'k--', label=f'paper: {problem.paper_rate}')
    ax.set(xscale='log', yscale='log', xlabel='T', title=DISPLAY[key][0])
    ax.legend(fontsize=7)
  for ax in list(axes.flat)[len(results.problems) :]:
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write(results: Results, out: Path) -> None:
  """Writes out/rates.json, out/rates.md and out/rates.png."""
  out.mkdir(parents=True, exist_ok=True)
  (out / 'rates.json').write_text(json.dumps(dataclasses.asdict(results), indent=1))
  (out / 'rates.md').write_text(markdown(results))
  plot(results, out / 'rates.png')

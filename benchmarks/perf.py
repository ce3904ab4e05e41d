"""Cost of step-decay schedules against optax's own: per step, per milestone, per sweep.

Usage:
  python -m benchmarks.perf --out DIR [--quick]

Writes DIR/perf.md (tables) and DIR/perf.json (raw figures). Every figure is a
median over repeats, timed in this process with the variants interleaved so
that drifts in machine load hit all of them alike; ratios compare figures
from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits

import optax_stepdecay as osd


def machine() -> dict[str, str | int]:
  cpu = platform.processor() or platform.machine()
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        cpu = line.split(':', 1)[1].strip()
        break
  except OSError:
    pass
  return {
    'cpu': cpu,
    'cores': len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
    'jax': jax.__version__,
    'optax': optax.__version__,
    'backend': jax.default_backend(),
    'python': platform.python_version(),
  }


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
  """Median wall time of each thunk; each repeat runs every thunk once, in turn."""
  for fn in fns.values():
    jax.block_until_ready(fn())  # compile and warm up
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      jax.block_until_ready(fn())
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(values) for name, values in times.items()}


def digits() -> tuple[jax.Array, jax.Array]:
  data = load_digits()
  return jnp.asarray(data.data / 16.0, jnp.float32), jnp.asarray(data.target)


# 1. Per-step cost ---------------------------------------------------------------


def scanned_training(tx, loss_fn, params, x, y, num_steps: int, batch: int):
  """A thunk running one jitted scan of num_steps minibatch steps; updates get value=loss."""
  tx = optax.with_extra_args_support(tx)

  def step(carry, indices):
    p, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(p, x[indices], y[indices])
    updates, state = tx.update(grads, state, p, value=loss)
    return (optax.apply_updates(p, updates), state), None

  indices = jax.random.randint(jax.random.key(1), (num_steps, batch), 0, x.shape[0])

  @jax.jit
  def run(p):  # returns the state too: XLA drops the work of a state nobody reads
    (p, state), _ = jax.lax.scan(step, (p, tx.init(p)), indices)
    return p, state

  return lambda: run(params)


def mlp_train_steps(tx: optax.GradientTransformation, x, y, num_steps: int, batch: int):
  """A jitted program that runs num_steps minibatch SGD steps of a 64-128-10 MLP."""
  k1, k2 = jax.random.split(jax.random.key(0))
  params = {
    'w1': jax.random.normal(k1, (64, 128)) * 0.1,
    'b1': jnp.zeros(128),
    'w2': jax.random.normal(k2, (128, 10)) * 0.1,
    'b2': jnp.zeros(10),
  }

  def loss_fn(p, xb, yb):
    hidden = jax.nn.relu(xb @ p['w1'] + p['b1'])
    logits = hidden @ p['w2'] + p['b2']
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  return scanned_training(tx, loss_fn, params, x, y, num_steps, batch)


def per_step_cost(quick: bool) -> dict:
  x, y = digits()
  num_steps, lr = (200, 0.1) if quick else (2000, 0.1)
  milestones = list(range(1, 1001))
  variants = {
    'a: optax.sgd, constant': optax.sgd(lr),
    'b: optax.sgd + exponential_decay(staircase)': optax.sgd(
      optax.exponential_decay(lr, 100, 0.5, staircase=True)
    ),
    'c: optax.sgd + step_decay_schedule': optax.sgd(
      osd.step_decay_schedule(lr, decay_factor=2.0, stage_length=100)
    ),
    'd: optax.sgd + multistep (1,000 milestones)': optax.sgd(
      osd.multistep_decay_schedule(lr, milestones=milestones, decay_factor=1.001)
    ),
    'e: step_decay_sgd': osd.step_decay_sgd(lr, decay_factor=2.0, stage_length=100),
  }
  runs = {name: mlp_train_steps(tx, x, y, num_steps, 128) for name, tx in variants.items()}
  medians = interleaved_medians(runs, repeats=5 if quick else 21)
  base = medians['a: optax.sgd, constant']
  return {
    'num_steps': num_steps,
    'rows': [
      {'variant': name, 'us_per_step': 1e6 * t / num_steps, 'ratio_to_a': t / base}
      for name, t in medians.items()
    ],
  }


# 1b. Per-step cost on a memory-bound model ------------------------------------------

GOAL = 1.05  # every transform within 5% of its plain-optax counterpart


def memory_bound_steps(tx, num_steps: int, hidden: int, batch: int = 64):
  """A jitted scan of num_steps SGD steps of a 64-hidden-hidden-10 MLP."""
  x, y = digits()
  keys = jax.random.split(jax.random.key(0), 3)
  sizes = [(64, hidden), (hidden, hidden), (hidden, 10)]
  params = [
    {'w': jax.random.normal(k, shape) / np.sqrt(shape[0]), 'b': jnp.zeros(shape[1])}
    for k, shape in zip(keys, sizes, strict=True)
  ]

  def loss_fn(p, xb, yb):
    for layer in p[:-1]:
      xb = jax.nn.relu(xb @ layer['w'] + layer['b'])
    logits = xb @ p[-1]['w'] + p[-1]['b']
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  return scanned_training(tx, loss_fn, params, x, y, num_steps, batch)


def parameter_ema(decay: float = 0.99) -> optax.GradientTransformation:
  """Keeps an EMA of the iterates with optax.incremental_update: optax's way to average them."""

  def update(updates, average, params):
    iterate = optax.apply_updates(params, updates)
    return updates, optax.incremental_update(iterate, average, 1 - decay)

  return optax.GradientTransformation(lambda params: jax.tree.map(jnp.array, params), update)


def memory_bound_cost(quick: bool) -> dict:
  """Every stateful transform of the library against its plain-optax counterpart."""
  num_steps, hidden = (20, 256) if quick else (200, 2048)
  lr, total = 0.01, num_steps
  sgd = optax.sgd(lr, momentum=0.9)
  staircase = optax.exponential_decay(lr, total // 4, 0.5, staircase=True)
  ours_staircase = osd.step_decay_schedule(lr, decay_factor=2.0, stage_length=total // 4)
  plain = 'optax.sgd(momentum) alone'
  sgd_ema = optax.chain(sgd, parameter_ema())
  ema = 'optax.sgd(momentum) + an EMA of the iterates (optax.incremental_update)'
  pairs = {  # name: (ours, the plain-optax counterpart, what the counterpart is)
    'step_decay_sgd (momentum)': (
      osd.step_decay_sgd(lr, decay_factor=2.0, stage_length=total // 4, momentum=0.9),
      optax.sgd(staircase, momentum=0.9),
      'optax.sgd(exponential_decay(staircase), momentum)',
    ),
    'with_linear_warmup(step decay)': (
      optax.sgd(osd.with_linear_warmup(ours_staircase, warmup_steps=10), 0.9),
      optax.sgd(optax.join_schedules([optax.linear_schedule(0.0, lr, 10), staircase], [10]), 0.9),
      'optax.sgd(join_schedules(linear, staircase), momentum)',
    ),
    'reduce_on_plateau chain': (
      optax.chain(sgd, osd.reduce_on_plateau(patience=2, accumulation_size=10)),
      optax.chain(sgd, optax.contrib.reduce_on_plateau(patience=2, accumulation_size=10)),
      'the same chain with optax.contrib.reduce_on_plateau',
    ),
    'auto_step_decay (momentum), defaults': (
      optax.chain(optax.trace(0.9), osd.auto_step_decay(lr)),
      sgd,
      plain,
    ),
    'sample_iterate': (optax.chain(sgd, osd.sample_iterate(ours_staircase)), sgd, plain),
    'stage_average': (optax.chain(sgd, osd.stage_average(ours_staircase)), sgd_ema, ema),
    'suffix_average': (optax.chain(sgd, osd.suffix_average(total // 2)), sgd_ema, ema),
  }
  runs = {}
  for name, (ours, theirs, _) in pairs.items():
    runs[f'{name}|ours'] = memory_bound_steps(ours, num_steps, hidden)
    runs[f'{name}|optax'] = memory_bound_steps(theirs, num_steps, hidden)
  medians = interleaved_medians(runs, repeats=3 if quick else 7)
  rows = [
    {
      'transform': name,
      'counterpart': counterpart,
      'ours_ms_per_step': 1e3 * medians[f'{name}|ours'] / num_steps,
      'optax_ms_per_step': 1e3 * medians[f'{name}|optax'] / num_steps,
      'ratio': medians[f'{name}|ours'] / medians[f'{name}|optax'],
    }
    for name, (_, _, counterpart) in pairs.items()
  ]
  num_params = 64 * hidden + hidden * hidden + hidden * 10 + 2 * hidden + 10
  return {
    'num_steps': num_steps,
    'hidden': hidden,
    'num_params': num_params,
    'batch': 64,
    'rows': rows,
  }


# 2. Milestone scaling --------------------------------------------------------------


def milestone_scaling(quick: bool) -> dict:
  sizes = [10, 100] if quick else [10, 100, 1000, 10_000]
  counts = jnp.arange(100_000, dtype=jnp.int32)
  rows = []
  for size in sizes:
    milestones = list(range(7, 7 * size + 1, 7))
    schedules = {
      'ours': osd.multistep_decay_schedule(1.0, milestones=milestones, decay_factor=1.0001),
      'optax': optax.piecewise_constant_schedule(1.0, {m: 0.9999 for m in milestones}),
    }
    row: dict = {'milestones': size}
    compiled = {}
    for name, schedule in schedules.items():
      start = time.perf_counter()
      compiled[name] = jax.jit(jax.vmap(schedule)).lower(counts).compile()
      row[f'{name}_compile_s'] = time.perf_counter() - start
    medians = interleaved_medians(
      {name: (lambda f=f: f(counts)) for name, f in compiled.items()}, repeats=5 if quick else 15
    )
    for name, t in medians.items():
      row[f'{name}_eval_ms_per_100k'] = 1e3 * t
    row['compile_ratio_optax_over_ours'] = row['optax_compile_s'] / row['ours_compile_s']
    row['eval_ratio_optax_over_ours'] = medians['optax'] / medians['ours']
    rows.append(row)
  return {'rows': rows}


# 3. Sweeps -------------------------------------------------------------------------


def logistic_loss(w, xb, yb):
  logits = xb @ w[:64] + w[64]
  penalty = 5e-4 * jnp.sum(w[:64] ** 2)
  return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean() + penalty


def compiled(fn, *args):
  """``fn`` traced and compiled for ``args``, and the seconds that took."""
  start = time.perf_counter()
  program = jax.jit(fn).lower(*args).compile()
  return program, time.perf_counter() - start


def optax_closures(configs, train_with) -> tuple[list, float]:
  """A program per configuration, as Optax's schedules take Python floats; the compile time."""
  programs, seconds = [], 0.0
  for init_value, alpha, length, stages in zip(*(c.tolist() for c in configs), strict=True):
    schedule = optax.exponential_decay(
      init_value, length, 1 / alpha, staircase=True, end_value=init_value / alpha ** (stages - 1)
    )
    program, compile_s = compiled(lambda s=schedule: train_with(s))
    programs.append(program)
    seconds += compile_s
  return programs, seconds


def sweep(quick: bool) -> dict:
  """K = 64 (quick: 16) step-decay runs: one vmapped program against Optax's ways and loops."""
  x, y = digits()
  num_steps, batch = (100, 128) if quick else (1000, 128)
  every = 2 if quick else 1  # quick: a 4 x 4 grid
  inits = np.geomspace(0.03, 30.0, 8)[::every]
  alphas = np.array([1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0])[::every]
  grid_init, grid_alpha = (a.reshape(-1) for a in np.meshgrid(inits, alphas, indexing='ij'))
  # The horizon's stage count depends on alpha: computed exactly on the host,
  # then passed to the vmapped program as integer arrays.
  grid_stages = np.array([osd.horizon_num_stages(num_steps, decay_factor=a) for a in grid_alpha])
  grid_length = num_steps // grid_stages
  configs = tuple(jnp.asarray(a) for a in (grid_init, grid_alpha, grid_length, grid_stages))
  indices = jax.random.randint(jax.random.key(0), (num_steps, batch), 0, x.shape[0])

  def configs_at(k):
    return tuple(c[k] for c in configs)

  loss_fn = logistic_loss

  def step(w, t, idx, config):
    init_value, decay_factor, length, stages = config
    schedule = osd.step_decay_schedule(
      init_value, decay_factor=decay_factor, stage_length=length, num_stages=stages
    )
    return w - schedule(t) * jax.grad(loss_fn)(w, x[idx], y[idx])

  def train_with(schedule):
    def body(w, inputs):
      t, idx = inputs
      return w - schedule(t) * jax.grad(loss_fn)(w, x[idx], y[idx]), None

    w, _ = jax.lax.scan(body, jnp.zeros((65, 10)), (jnp.arange(num_steps), indices))
    return loss_fn(w, x, y)

  def train(*config):
    init_value, decay_factor, length, stages = config
    return train_with(
      osd.step_decay_schedule(
        init_value, decay_factor=decay_factor, stage_length=length, num_stages=stages
      )
    )

  def inject_hyperparams_way(*config):
    """Optax's no-recompile sweep: the step size injected each step, the staircase by hand."""
    init_value, decay_factor, length, stages = config
    tx = optax.inject_hyperparams(optax.sgd)(learning_rate=init_value)

    def body(carry, inputs):
      w, state = carry
      t, idx = inputs
      stage = jnp.minimum(t // length, stages - 1)
      state.hyperparams['learning_rate'] = init_value / decay_factor**stage
      updates, state = tx.update(jax.grad(loss_fn)(w, x[idx], y[idx]), state, w)
      return (optax.apply_updates(w, updates), state), None

    w = jnp.zeros((65, 10))
    (w, _), _ = jax.lax.scan(body, (w, tx.init(w)), (jnp.arange(num_steps), indices))
    return loss_fn(w, x, y)

  closures, optax_compile_s = optax_closures(configs, train_with)
  ours, ours_compile_s = compiled(jax.vmap(train), *configs)
  injected, inject_compile_s = compiled(jax.vmap(inject_hyperparams_way), *configs)
  whole_run, runs_compile_s = compiled(train, *configs_at(0))
  one_step, step_compile_s = compiled(step, jnp.zeros((65, 10)), 0, indices[0], configs_at(0))

  def loop_over_steps():  # the usual training loop: one jitted call per step
    results = []
    for k in range(len(grid_init)):
      w = jnp.zeros((65, 10))
      for t in range(num_steps):
        w = one_step(w, t, indices[t], configs_at(k))
      results.append(w)
    return results

  medians = interleaved_medians(
    {
      'optax': lambda: [program() for program in closures],
      'ours': lambda: ours(*configs),
      'inject': lambda: injected(*configs),
      'runs': lambda: [whole_run(*configs_at(k)) for k in range(len(grid_init))],
      'steps': loop_over_steps,
    },
    repeats=3 if quick else 5,
  )
  losses = np.asarray(ours(*configs))
  best = int(np.nanargmin(losses))

  def difference(other):  # the schedules agree to rounding; large steps amplify it: the median
    return float(np.nanmedian(np.abs(np.asarray(other) - losses) / np.abs(losses)))

  compile_s = {'optax': optax_compile_s, 'ours': ours_compile_s, 'inject': inject_compile_s}
  return {
    'compile_s': compile_s | {'runs': runs_compile_s, 'steps': step_compile_s},
    'run_s': medians,
    'total_speedup_vs_optax_way': (optax_compile_s + medians['optax'])
    / (ours_compile_s + medians['ours']),
    'median_relative_loss_difference': {
      'optax': difference([program() for program in closures]),
      'inject': difference(injected(*configs)),
    },
    'configs': int(grid_init.size),
    'num_steps': num_steps,
    'batch': batch,
    'best': {
      'init_value': float(grid_init[best]),
      'decay_factor': float(grid_alpha[best]),
      'num_stages': int(grid_stages[best]),
      'train_loss': float(losses[best]),
    },
  }


# 4. Throughput ---------------------------------------------------------------------


def throughput(quick: bool) -> dict:
  n = 10**6 if quick else 10**7
  counts = jnp.arange(n, dtype=jnp.int32)
  pairs = {
    'step decay vs exponential_decay(staircase)': (
      osd.step_decay_schedule(1.0, decay_factor=2.0, stage_length=1000),
      optax.exponential_decay(1.0, 1000, 0.5, staircase=True),
    ),
    'multistep (10) vs piecewise_constant (10)': (
      osd.multistep_decay_schedule(
        1.0, milestones=list(range(1000, 10_001, 1000)), decay_factor=2.0
      ),
      optax.piecewise_constant_schedule(1.0, {m: 0.5 for m in range(1000, 10_001, 1000)}),
    ),
  }
  rows = []
  for name, (ours, theirs) in pairs.items():
    fns = {'ours': jax.jit(ours), 'optax': jax.jit(theirs)}
    medians = interleaved_medians(
      {k: (lambda f=f: f(counts)) for k, f in fns.items()}, repeats=3 if quick else 11
    )
    rows.append(
      {
        'pair': name,
        'ours_counts_per_s': n / medians['ours'],
        'optax_counts_per_s': n / medians['optax'],
        'ratio_ours_over_optax_time': medians['ours'] / medians['optax'],
      }
    )
  return {'counts': n, 'rows': rows}


# Report ----------------------------------------------------------------------------


SWEEP_METHODS = {
  'optax': '(a) Optax: an exponential_decay(staircase) closure and a program per configuration',
  'ours': '(b) optax_stepdecay: one vmapped program, array hyperparameters',
  'inject': '(c) Optax: inject_hyperparams + vmap, the staircase written in the loop',
  'runs': '(d) optax_stepdecay: a loop over the configurations, one compiled run each',
  'steps': '(e) optax_stepdecay: a loop over configurations and steps, one jitted step',
}


def sweep_rows(s: dict) -> list[str]:
  rows = []
  for key, name in SWEEP_METHODS.items():
    compile_s, run_s = s['compile_s'][key], s['run_s'][key]
    ratio = (compile_s + run_s) / (s['compile_s']['ours'] + s['run_s']['ours'])
    difference = s['median_relative_loss_difference'].get(key)
    rows.append(
      f'| {name} | {compile_s:.2f} | {run_s:.3f} | {compile_s + run_s:.2f} | {ratio:.1f}x '
      f'| {"" if difference is None else f"{difference:.1e}"} |'
    )
  return rows


def markdown(results: dict) -> str:
  m = results['machine']
  lines = [
    '# optax_stepdecay performance',
    '',
    f'Machine: {m["cpu"]}, {m["cores"]} cores, {m["backend"]}; jax {m["jax"]}, '
    f'optax {m["optax"]}, Python {m["python"]}. Command: `{results["command"]}`.',
    '',
    f'## 1. Per-step cost (MLP 64-128-10 on digits, batch 128, '
    f'{results["per_step"]["num_steps"]} steps in one jitted scan)',
    '',
    '| variant | µs / step | ratio to (a) |',
    '|---|---:|---:|',
  ]
  for row in results['per_step']['rows']:
    lines.append(f'| {row["variant"]} | {row["us_per_step"]:.1f} | {row["ratio_to_a"]:.3f} |')
  mb = results['memory_bound']
  lines += [
    '',
    f'## 1b. Per-step cost on a memory-bound model (MLP 64-{mb["hidden"]}-{mb["hidden"]}-10, '
    f'{mb["num_params"]:,} parameters, batch {mb["batch"]}, {mb["num_steps"]} steps in one '
    'jitted scan)',
    '',
    '| transform | counterpart | ours (ms / step) | counterpart (ms / step) '
    f'| ratio (goal <= {GOAL}) |',
    '|---|---|---:|---:|---:|',
  ]
  for row in mb['rows']:
    lines.append(
      f'| {row["transform"]} | {row["counterpart"]} | {row["ours_ms_per_step"]:.3f} '
      f'| {row["optax_ms_per_step"]:.3f} | {row["ratio"]:.3f} |'
    )
  lines += [
    '',
    '## 2. Milestone scaling (jit of a vmapped schedule over 100,000 counts)',
    '',
    '| M | ours compile (s) | optax compile (s) | compile ratio optax/ours '
    '| ours eval (ms) | optax eval (ms) | eval ratio optax/ours |',
    '|---:|---:|---:|---:|---:|---:|---:|',
  ]
  for row in results['milestones']['rows']:
    lines.append(
      f'| {row["milestones"]:,} | {row["ours_compile_s"]:.3f} | {row["optax_compile_s"]:.3f} '
      f'| {row["compile_ratio_optax_over_ours"]:.1f} | {row["ours_eval_ms_per_100k"]:.2f} '
      f'| {row["optax_eval_ms_per_100k"]:.2f} | {row["eval_ratio_optax_over_ours"]:.1f} |'
    )
  s = results['sweep']
  b = s['best']
  lines += [
    '',
    f'## 3. Sweep: {s["configs"]} step-decay configurations of logistic regression, '
    f'{s["num_steps"]} steps of batch {s["batch"]} each',
    '',
    'Compile: tracing and compiling every program the method needs. Run: the compiled programs '
    'doing all the runs (medians of interleaved repeats). Final losses: median relative '
    'difference from (b).',
    '',
    '| method | compile (s) | run (s) | compile + run (s) | (compile + run) / (b) | final losses |',
    '|---|---:|---:|---:|---:|---:|',
    *sweep_rows(s),
    '',
    f'Compile + run, (a) / (b): {s["total_speedup_vs_optax_way"]:.1f}x (goal >= 10).',
    '',
    f'Best configuration: init_value={b["init_value"]:.4g}, decay_factor={b["decay_factor"]:g} '
    f'({b["num_stages"]} stages), final train loss {b["train_loss"]:.4f}.',
    '',
    f'## 4. Throughput over {results["throughput"]["counts"]:,} counts',
    '',
    '| pair | ours (counts/s) | optax (counts/s) | time ratio ours/optax |',
    '|---|---:|---:|---:|',
  ]
  for row in results['throughput']['rows']:
    lines.append(
      f'| {row["pair"]} | {row["ours_counts_per_s"]:.3g} | {row["optax_counts_per_s"]:.3g} '
      f'| {row["ratio_ours_over_optax_time"]:.2f} |'
    )
  return '\n'.join(lines) + '\n'


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__ and __doc__.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True, help='directory for perf.md and perf.json')
  parser.add_argument('--quick', action='store_true', help='tiny sizes: seconds, for CI')
  args = parser.parse_args(argv)
  command = 'python -m benchmarks.perf' + (' --quick' if args.quick else '') + f' --out {args.out}'
  results = {'machine': machine(), 'command': command, 'quick': args.quick}
  for key, fn in [
    ('per_step', per_step_cost),
    ('memory_bound', memory_bound_cost),
    ('milestones', milestone_scaling),
    ('sweep', sweep),
    ('throughput', throughput),
  ]:
    print(f'[perf] {key} ...', flush=True)
    results[key] = fn(args.quick)
  args.out.mkdir(parents=True, exist_ok=True)
  (args.out / 'perf.json').write_text(json.dumps(results, indent=2))
  (args.out / 'perf.md').write_text(markdown(results))
  print(markdown(results))
  return results


if __name__ == '__main__':
  main()

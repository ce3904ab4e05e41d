"""Measure the convergence rates of step decay and other step sizes against the paper's.

Usage:
  python -m benchmarks.theory --out DIR [--quick]

For every problem, horizon T and open-loop step size, SGD runs from the same
start for T steps; eta0 is tuned per horizon on a grid (the best mean final
error on the tuning seeds; the errors reported are fresh runs on as many other
seeds). Schedule-free SGD and auto_step_decay run once per seed to the longest
horizon and are read at every horizon (see benchmarks.runner). All runs of one
problem and horizon are a single vmapped program. Writes DIR/rates.md (tables,
fitted log-log slopes beside the paper's rates) and DIR/rates.png (error
against T), plus DIR/rates.json.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from benchmarks import report
from benchmarks import runner
from benchmarks.problems import all_problems


@dataclasses.dataclass(frozen=True)
class Settings:
  """The size of a run: its horizons, its seeds and the grid eta0 is tuned on."""

  horizons: list[int]
  seeds: int
  grid: tuple[float, ...]


FULL = Settings([2**k for k in range(10, 17)], 16, runner.ETA0_GRID)
QUICK = Settings([2**k for k in range(7, 10)], 4, runner.ETA0_GRID[1::2])


def command_line(args: argparse.Namespace) -> str:
  """The command that reproduces a run with these arguments."""
  return 'python -m benchmarks.theory' + (' --quick' if args.quick else '') + f' --out {args.out}'


def parse(argv: list[str] | None, doc: str | None) -> tuple[argparse.Namespace, Settings]:
  """``--out DIR [--quick]``, as every benchmark on these problems takes them, and its settings."""
  parser = argparse.ArgumentParser(description=doc and doc.splitlines()[0])
  parser.add_argument('--out', type=Path, required=True)
  parser.add_argument(
    '--quick',
    action='store_true',
    help=f'{len(QUICK.horizons)} small horizons, {QUICK.seeds} seeds: seconds',
  )
  args = parser.parse_args(argv)
  return args, QUICK if args.quick else FULL


def main(argv: list[str] | None = None) -> runner.Results:
  """Runs the benchmark, writes its report to --out and prints the tables."""
  args, settings = parse(argv, __doc__)
  results = runner.run(
    all_problems, settings.horizons, settings.seeds, settings.grid, command_line(args)
  )
  report.write(results, args.out)
  print(report.markdown(results))
  return results


if __name__ == '__main__':
  main()

"""Command line of the language-model example: one run, tuning, the comparison, branched cooldowns.

  python -m examples.lm train --schedule step_decay --checkpoint-dir runs/lm-run
  python -m examples.lm compare        # every schedule, 3 seeds, tuned settings -> runs/lm/
  python -m examples.lm branch         # cooldowns from orbax checkpoints vs cosine -> runs/lm/
  python -m examples.lm tune           # the tuning protocol -> runs/tune-lm/lm.json

The corpus is the Python standard library's own source (--corpus for another
folder of *.py files). Every impossible flag value ends the command with
status 2 and one line on stderr, as in ``python -m examples.main``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from examples import compare as mnist_compare
from examples import configs as mnist_configs
from examples import main as mnist_main
from examples import schedules
from examples.lm import branch
from examples.lm import compare
from examples.lm import configs
from examples.lm import data as lm_data
from examples.lm import model
from examples.lm import optim
from examples.lm import train

PROG = 'python -m examples.lm'
CHOICES = {'schedule': optim.SCHEDULES, 'dtype': model.DTYPES}
COMPARED = list(optim.SCHEDULES)
RUN_SKIP = ('schedule', 'lr', 'knob', 'seed')  # the flags of one run, not of many


def parser() -> mnist_main.Parser:
  root = mnist_main.Parser(prog=PROG, description=__doc__, formatter_class=mnist_main.HelpFormatter)
  commands = root.add_subparsers(dest='command', required=True, parser_class=mnist_main.Parser)
  listed = schedules.help_text(optim.SCHEDULES)
  epilog = f'schedules (--schedule / --schedules) and their knob (--knob):\n{listed}'

  def command(name: str, help: str, skip: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    sub = commands.add_parser(
      name, help=help, description=help, epilog=epilog, formatter_class=mnist_main.HelpFormatter
    )
    mnist_main.add_fields(sub, configs.Config, CHOICES, skip)
    sub.add_argument(
      '--corpus', type=Path, help='a folder of *.py files (default: the standard library)'
    )
    return sub

  run = command('train', 'train one model with one step size (checkpoints, resume)')
  run.add_argument('--out', type=Path, help='write history.json and learning_rates.json here')
  mnist_main.add_run_options(run, 'every quarter of the run', 'evaluation')
  seeds_help = 'runs per schedule, on seeds 0 to N-1'
  for name, help in [
    ('compare', 'train every schedule on the same seeds with its tuned setting; table and plots'),
    ('tune', 'the tuning protocol: choose eta0 and knob per schedule on held-out training files'),
    ('branch', 'cooldowns branched from orbax checkpoints of one run against cosine runs'),
  ]:
    sub = command(name, help, RUN_SKIP)
    default = 'runs/tune-lm' if name == 'tune' else 'runs/lm'
    sub.add_argument('--out', type=Path, help=f'output folder (default: {default})')
    if name != 'branch':
      sub.add_argument(
        '--schedules',
        type=mnist_main.schedule_list(optim.SCHEDULES),
        default=COMPARED,
        help='comma-separated names',
      )
    if name != 'tune':
      sub.add_argument(
        '--seeds',
        type=mnist_main._checked(int, '--seeds', positive=True),
        default=3,
        help=seeds_help,
      )
      tuned_help = 'tuned settings (default: examples/tuned/lm.json)'
      sub.add_argument('--tuned', type=Path, help=tuned_help)
  return root


def _config(args: argparse.Namespace) -> configs.Config:
  fields = {f.name for f in dataclasses.fields(configs.Config)}
  config = configs.Config(**{k: v for k, v in vars(args).items() if k in fields})
  problem = configs.check(config)
  if problem:
    raise train.UsageError(problem)
  return config


def _tuned(args: argparse.Namespace) -> dict | None:
  path = getattr(args, 'tuned', None)
  if path is not None and not path.is_file():
    raise train.UsageError(f'--tuned {path}: no such file')
  return mnist_configs.load_tuned('lm', path)


def _train(args: argparse.Namespace) -> None:
  config = train.resolve(_config(args), _tuned(args))
  corpus = lm_data.load_corpus(args.corpus)
  result = train.train_and_evaluate(config, mnist_main.run_options(args), corpus)
  mnist_main.write_run(args.out, result)


def _compare(args: argparse.Namespace) -> None:
  started = time.perf_counter()
  config, tuned = _config(args), _tuned(args)
  for warning in mnist_compare.setting_warnings(config, tuned):
    print(warning)
  corpus = lm_data.load_corpus(args.corpus)
  comparison = compare.compare(config, args.schedules, list(range(args.seeds)), corpus, tuned)
  compare.report(args.out or Path('runs/lm'), comparison, started)


def _tune(args: argparse.Namespace) -> None:
  config = _config(args)
  corpus = lm_data.load_corpus(args.corpus, tuning=True)
  tuned = compare.tune(config, args.schedules, corpus)
  mnist_compare.save_tuned((args.out or Path('runs/tune-lm')) / 'lm.json', tuned)
  print(mnist_compare.difference(tuned, mnist_configs.load_tuned('lm')))


def _branch(args: argparse.Namespace) -> None:
  config, tuned = _config(args), _tuned(args)
  corpus = lm_data.load_corpus(args.corpus)
  result = branch.run(config, corpus, list(range(args.seeds)), tuned)
  branch.report(args.out or Path('runs/lm'), result, config, corpus.info, args.seeds)


COMMANDS = {'train': _train, 'compare': _compare, 'tune': _tune, 'branch': _branch}


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  try:
    COMMANDS[args.command](args)
  except (train.UsageError, lm_data.CorpusError) as error:
    print(f'{PROG} {args.command}: error: {error}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())

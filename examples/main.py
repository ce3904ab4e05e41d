"""Command line of the examples: train one run, compare step sizes, tune them, branch cooldowns.

  python -m examples.main train --schedule step_decay --epochs 60
  python -m examples.main compare                 # MNIST-1D, every schedule, 10 seeds
  python -m examples.main tune                    # the tuning protocol -> runs/tune-mnist1d/
  python -m examples.main branch                  # cooldowns from one run against cosine runs

Every impossible flag value ends the command with status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import typing
from pathlib import Path

import jax

from examples import branch
from examples import compare
from examples import configs
from examples import data
from examples import models
from examples import schedules
from examples import train

CHOICES = {'dataset': data.DATASETS, 'model': models.MODELS, 'schedule': schedules.SCHEDULES}


class Parser(argparse.ArgumentParser):
  """argparse, but a bad flag is one line on stderr (no usage block) and exit status 2."""

  def error(self, message: str) -> typing.NoReturn:
    self.exit(2, f'{self.prog}: error: {message}\n')


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
  """Shows each flag's default once: the help's own words about it, else its value if it has one."""

  def _get_help_string(self, action: argparse.Action) -> str | None:
    help = action.help or ''
    switch = action.nargs == 0 and action.const is not None  # store_true / store_false
    if '(default' in help or action.default in (None, argparse.SUPPRESS) or switch:
      return action.help
    return f'{help} (default: %(default)s)'


def _checked(kind: type, flag: str, field: dataclasses.Field | None = None, **checks):
  """An argparse type: parse as ``kind``, then refuse impossible values, naming them."""
  field = field or dataclasses.field(metadata=checks)

  def parse(text: str):
    try:
      value = kind(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected {kind.__name__}, got {text!r}') from None
    problem = configs.check_value(flag, value, field)
    if problem:
      raise argparse.ArgumentTypeError(problem.removeprefix(f'{flag} '))
    return value

  parse.__name__ = kind.__name__
  return parse


def schedule_list(registry: typing.Mapping[str, object]):
  """An argparse type: comma-separated names of the registry's schedules."""

  def parse(text: str) -> list[str]:
    names = [n for n in text.split(',') if n]
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
      raise argparse.ArgumentTypeError(
        f'unknown schedule(s) {unknown or text!r}; choose from {",".join(registry)}'
      )
    return names

  return parse


_schedule_list = schedule_list(schedules.SCHEDULES)


def _add_config_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
  add_fields(parser, configs.Config, CHOICES, skip)
  parser.add_argument(
    '--data-dir',
    type=Path,
    default=Path('data'),
    help='where the MNIST / CIFAR files are (mnist1d and digits need none)',
  )


def add_fields(
  parser: argparse.ArgumentParser,
  config_class: type,
  choices: typing.Mapping[str, typing.Iterable[str]],
  skip: tuple[str, ...] = (),
) -> None:
  """A flag per field of a config dataclass: its default, help and checks, choices by name."""
  hints = typing.get_type_hints(config_class)
  for field in dataclasses.fields(config_class):
    if field.name in skip:
      continue
    flag = '--' + field.name.replace('_', '-')
    kind = typing.get_args(hints[field.name])[0] if field.default is None else hints[field.name]
    if kind is bool:
      parser.add_argument(
        flag,
        action=argparse.BooleanOptionalAction,
        default=field.default,
        help=field.metadata['help'],
      )
    elif field.name in choices:
      parser.add_argument(
        flag,
        choices=sorted(choices[field.name]),
        default=field.default,
        help=field.metadata['help'],
      )
    else:
      parser.add_argument(
        flag, type=_checked(kind, flag, field), default=field.default, help=field.metadata['help']
      )


def add_run_options(run: argparse.ArgumentParser, every: str, line: str) -> None:
  """The flags of a single run's checkpoints (saved ``every`` by default) and progress display."""
  run.add_argument('--checkpoint-dir', help='save checkpoints here; resume from the newest')
  for flag, kind, help in [
    (
      '--checkpoint-every-steps',
      int,
      f'save every N updates (default: {every}; always at the end)',
    ),
    ('--checkpoint-every-secs', float, 'save at most this often instead, in seconds'),
    ('--stop-after-steps', int, 'stop (and save) after this update, to resume later'),
  ]:
    run.add_argument(flag, type=_checked(kind, flag, positive=True), help=help)
  run.add_argument(
    '--restart',
    action='store_true',
    help='start over in a checkpoint directory that holds another run',
  )
  run.add_argument(
    '--no-progress',
    dest='progress',
    action='store_false',
    help=f'no progress bar and no line per {line}; the final result line is still printed',
  )


def run_options(args: argparse.Namespace) -> train.Options:
  """The train.Options of a single run's flags (see add_run_options)."""
  return train.Options(
    args.checkpoint_dir,
    args.checkpoint_every_steps,
    args.checkpoint_every_secs,
    args.stop_after_steps,
    args.restart,
    args.progress,
  )


def parser() -> Parser:
  root = Parser(prog='python -m examples.main', description=__doc__, formatter_class=HelpFormatter)
  commands = root.add_subparsers(dest='command', required=True, parser_class=Parser)
  epilog = 'schedules (--schedule / --schedules) and their knob (--knob):\n' + schedules.help_text()

  def command(name: str, help: str) -> argparse.ArgumentParser:
    return commands.add_parser(
      name, help=help, description=help, epilog=epilog, formatter_class=HelpFormatter
    )

  run = command('train', 'train one model with one step size (checkpoints, resume, data parallel)')
  _add_config_flags(run)
  run.add_argument('--out', type=Path, help='write history.json and learning_rates.json here')
  add_run_options(run, 'every 10 epochs', 'epoch')
  run.add_argument('--coordinator-address', help='HOST:PORT of process 0, for multi-process runs')
  run.add_argument(
    '--num-processes',
    type=_checked(int, '--num-processes', positive=True),
    help='processes of a multi-process run',
  )
  run.add_argument(
    '--process-id',
    type=_checked(int, '--process-id', non_negative=True),
    help='this process, from 0 (process 0 prints and writes the outputs)',
  )

  tuned_help = 'tuned settings (default: examples/tuned/DATASET.json)'
  for name, help in [
    ('compare', 'train every schedule on the same seeds with its tuned setting; table and plots'),
    ('tune', 'the tuning protocol: choose eta0 and knob per schedule on validation data'),
    ('branch', 'cooldowns branched from one constant run against cosine runs of the same lengths'),
  ]:
    sub = command(name, help)
    skip = ('schedule', 'lr', 'knob', 'seed', 'augment') + (('epochs',) if name == 'branch' else ())
    _add_config_flags(sub, skip=skip)
    sub.add_argument('--out', type=Path, help=f'output folder (default: runs/{name}-DATASET)')
    if name in ('compare', 'tune'):
      sub.add_argument(
        '--schedules',
        type=_schedule_list,
        default=list(schedules.COMPARED),
        help='comma-separated names',
      )
    if name in ('compare', 'branch'):
      sub.add_argument(
        '--seeds',
        type=_checked(int, '--seeds', positive=True),
        default=10,
        help='runs per schedule, on seeds 0 to N-1',
      )
      sub.add_argument('--tuned', type=Path, help=tuned_help)
  commands.choices['branch'].add_argument(
    '--stable-steps',
    type=_checked(int, '--stable-steps', positive=True),
    default=1600,
    help='updates of the constant run; cooldowns branch at 25, 50, 75 and 100%% of them',
  )
  return root


def _config(args: argparse.Namespace) -> configs.Config:
  fields = {f.name for f in dataclasses.fields(configs.Config)}
  return configs.Config(**{k: v for k, v in vars(args).items() if k in fields})


def _initialize_distributed(args: argparse.Namespace) -> None:
  """Joins a multi-process run when its three flags are given."""
  distributed = [args.coordinator_address, args.num_processes, args.process_id]
  if any(v is not None for v in distributed):
    if any(v is None for v in distributed):
      raise train.UsageError('--coordinator-address, --num-processes and --process-id go together')
    jax.distributed.initialize(*distributed)


def _train(args: argparse.Namespace, dataset: data.Dataset) -> None:
  config = train.resolve(_config(args), configs.load_tuned(args.dataset))
  result = train.train_and_evaluate(config, run_options(args), dataset)
  write_run(args.out, result)


def write_run(out: Path | None, result) -> None:
  """history.json and learning_rates.json of a single run, from process 0 (nothing without out)."""
  if out and jax.process_index() == 0:
    out.mkdir(parents=True, exist_ok=True)
    (out / 'history.json').write_text(json.dumps(result.history, indent=1))
    (out / 'learning_rates.json').write_text(json.dumps(result.learning_rates.tolist()))


def _many_runs(args: argparse.Namespace) -> tuple[configs.Config, Path, dict | None]:
  """The shared settings of compare, tune and branch: config, output folder, tuned settings."""
  config = dataclasses.replace(
    _config(args), model=args.model or data.DATASETS[args.dataset].default_model
  )
  out = args.out or Path('runs') / f'{args.command}-{args.dataset}'
  path = getattr(args, 'tuned', None)
  if path is not None and not path.is_file():
    raise train.UsageError(f'--tuned {path}: no such file')
  return config, out, configs.load_tuned(args.dataset, path)


def _compare(args: argparse.Namespace, dataset: data.Dataset) -> None:
  started = time.perf_counter()
  config, out, tuned = _many_runs(args)
  for warning in compare.setting_warnings(config, tuned):
    print(warning)
  comparison = compare.compare(config, args.schedules, list(range(args.seeds)), dataset, tuned)
  compare.report(out, comparison, started)


def _tune(args: argparse.Namespace, dataset: data.Dataset) -> None:
  config, out, committed = _many_runs(args)
  tuned = compare.tune(config, args.schedules, dataset)
  compare.save_tuned(out / f'{args.dataset}.json', tuned)
  print(compare.difference(tuned, committed))


def _branch(args: argparse.Namespace, dataset: data.Dataset) -> None:
  config, out, tuned = _many_runs(args)
  result = branch.run(config, dataset, list(range(args.seeds)), args.stable_steps, tuned)
  branch.report(out, result, args.seeds)


COMMANDS = {'train': _train, 'compare': _compare, 'tune': _tune, 'branch': _branch}


def main(argv: list[str] | None = None) -> int:
  args = parser().parse_args(argv)
  try:
    if args.command == 'train':  # before anything else uses JAX, as jax.distributed requires
      _initialize_distributed(args)
    dataset = data.load_dataset(args.dataset, args.data_dir)
    COMMANDS[args.command](args, dataset)
  except train.UsageError as error:
    print(f'python -m examples.main {args.command}: error: {error}', file=sys.stderr)
    return 2
  except data.MissingDataError as error:
    print(f'python -m examples.main {args.command}: {error}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())

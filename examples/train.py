"""Train one model with one step size.

  python examples/train.py --dataset digits --schedule step_decay --lr 0.3 --epochs 30
  python examples/train.py --dataset cifar10 --data-dir ~/data --model resnet20 \
      --schedule step_decay --lr 0.1 --momentum 0.9 --weight-decay 5e-4 --epochs 164 \
      --batch-size 128 --checkpoint-dir /tmp/ckpt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax

from examples import data
from examples import models
from examples import schedules
from examples import training


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  defaults = training.RunConfig()
  p.add_argument('--dataset', choices=data.DATASETS, default=defaults.dataset)
  p.add_argument('--data-dir', default=defaults.data_dir, help='where MNIST / CIFAR files are')
  p.add_argument('--model', choices=models.MODELS, default=defaults.model)
  p.add_argument('--schedule', choices=sorted(schedules.SCHEDULES), default=defaults.schedule)
  p.add_argument('--lr', type=float, default=defaults.lr, help='eta0, the initial step size')
  p.add_argument('--knob', type=float, help="the schedule's decay knob (see schedules.py)")
  p.add_argument('--momentum', type=float, default=defaults.momentum)
  p.add_argument('--weight-decay', type=float, default=defaults.weight_decay, help='coupled L2')
  p.add_argument('--epochs', type=int, default=defaults.epochs)
  p.add_argument('--batch-size', type=int, default=defaults.batch_size, help='global batch')
  p.add_argument('--seed', type=int, default=defaults.seed)
  p.add_argument('--out', type=Path, help='write history.json and learning_rates.json here')
  p.add_argument('--checkpoint-dir', help='save each epoch; resume from the latest checkpoint')
  p.add_argument('--stop-after-steps', type=int, help='stop (and checkpoint) after this step')
  p.add_argument('--no-augment', dest='augment', action='store_false', default=None)
  p.add_argument('--distributed', action='store_true', help='call jax.distributed.initialize()')
  return p


def main(argv: list[str] | None = None) -> training.RunResult:
  args = parser().parse_args(argv)
  if args.distributed:
    jax.distributed.initialize()
  config = training.RunConfig(
    **{k: v for k, v in vars(args).items() if k in training.RunConfig.__dataclass_fields__}
  )
  print(f'{jax.device_count()} device(s): {jax.devices()[0].platform}; {config}', flush=True)
  result = training.train(config)
  if args.out:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'history.json').write_text(json.dumps(result.history, indent=1))
    (args.out / 'learning_rates.json').write_text(json.dumps(result.learning_rates.tolist()))
  return result


if __name__ == '__main__':
  main()

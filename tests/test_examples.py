"""The examples: command line, registry, many-run engine, checkpoints and data parallelism."""

import dataclasses
import json
import re
import subprocess
import sys

import chex
import jax
import numpy as np
import optax
import pytest

import optax_stepdecay as osd
from examples import compare
from examples import configs
from examples import data
from examples import main
from examples import models
from examples import schedules
from examples import sweep
from examples import train
from tests import processes

ROOT = processes.ROOT
FAST = configs.Config(dataset='digits', epochs=2, lr=0.3, batch_size=32, knob=2.0)
QUIET = train.Options(progress=False)


@pytest.fixture(scope='module')
def digits():
  return data.load_digits_dataset()


@pytest.fixture(scope='module')
def tiny_mnist1d():
  full = data.load_mnist1d()
  return data.Dataset(
    'mnist1d', full.x_train[:256], full.y_train[:256], full.x_test[:64], full.y_test[:64], 10
  )


BAD_FLAGS = [
  (['train', '--batch-size', '0'], '--batch-size'),
  (['train', '--batch-size', '-3'], '--batch-size'),
  (['train', '--batch-size', '5000', '--lr', '0.1'], '--batch-size 5000'),
  (['train', '--epochs', '0'], '--epochs'),
  (['train', '--lr', '-1'], '--lr'),
  (['train', '--lr', '0'], '--lr'),
  (['train', '--lr', 'nan'], '--lr'),
  (['train', '--lr', 'inf'], '--lr'),
  (['train', '--lr', 'abc'], '--lr'),
  (['train', '--momentum', '1'], '--momentum'),
  (['train', '--weight-decay', '-1e-4'], '--weight-decay'),
  (['train', '--seed', '-1'], '--seed'),
  (['train', '--knob', '0', '--lr', '0.1'], '--knob'),
  (['train', '--knob', '0.5', '--lr', '0.1'], '--knob 0.5'),
  (['train', '--dataset', 'imagenet'], '--dataset'),
  (['train', '--model', 'vit'], '--model'),
  (['train', '--schedule', 'linear'], '--schedule'),
  (['train', '--checkpoint-every-steps', '0'], '--checkpoint-every-steps'),
  (['train', '--coordinator-address', '127.0.0.1:1234', '--lr', '0.1'], '--num-processes'),
  (['compare', '--seeds', '0'], '--seeds'),
  (['compare', '--schedules', 'step_decay,linear'], '--schedules'),
  (['compare', '--tuned', '/nonexistent/tuned.json'], '--tuned'),
  (['branch', '--stable-steps', '0'], '--stable-steps'),
  (['tune', '--epochs', '-2'], '--epochs'),
  (['train', '--unknown-flag'], '--unknown-flag'),
]


@pytest.mark.parametrize(('argv', 'named'), BAD_FLAGS, ids=[' '.join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_2_with_one_line_naming_it(argv, named, capsys):
  processes.assert_one_line_usage_error(main.main, argv, named, capsys)


def test_missing_data_is_one_line_naming_the_file(tmp_path, capsys):
  status = main.main(['train', '--dataset', 'mnist', '--data-dir', str(tmp_path), '--lr', '0.1'])
  err = capsys.readouterr().err
  assert status == 1 and len(err.strip().splitlines()) == 1
  assert 'train-images-idx3-ubyte' in err and 'never download' in err


def test_command_line_in_a_fresh_process_prints_no_traceback():
  out = processes.run_python(['-m', 'examples.main', 'train', '--batch-size', '0'])
  assert out.returncode == 2 and out.stderr.count('\n') == 1, out.stderr


def test_help_shows_defaults_and_every_knob(capsys):
  with pytest.raises(SystemExit):
    main.main(['train', '--help'])
  text = capsys.readouterr().out
  assert '(default: 128)' in text and '(default: mnist1d)' in text
  for name, spec in schedules.SCHEDULES.items():
    assert name in text
    if spec.knob:
      assert f'knob {spec.knob}' in text


def test_help_shows_each_default_once(capsys):
  for command in main.COMMANDS:
    with pytest.raises(SystemExit):
      main.main([command, '--help'])
    text = capsys.readouterr().out
    flags = re.split(r'\n  -', text.split('\noptions:')[1].split('\n\n')[0])
    assert len(flags) > 10, text
    for flag in flags:
      assert flag.count('(default') <= 1 and '(default: None)' not in flag, (command, flag)


NO_DOCSTRINGS = """
import contextlib, io, types
import numpy as np
from examples import compare, configs, data, main, sweep
assert main.__doc__ is None and compare.__doc__ is None
for argv in ([], ['train'], ['compare'], ['tune'], ['branch']):
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      main.main([*argv, '--help'])
  except SystemExit as stop:
    assert stop.code == 0, argv
def scores(config, members, dataset):
  ones = np.ones((len(members), 1))
  return types.SimpleNamespace(test_accuracy=ones, test_loss=ones, seconds=0.0)
sweep.train_many = scores
with contextlib.redirect_stdout(io.StringIO()):
  tuned = compare.tune(configs.Config(), ['constant'], data.load_digits_dataset())
print(tuned['protocol'])
"""


def test_command_line_and_tuning_work_without_docstrings():
  out = processes.run_python(['-OO', '-c', NO_DOCSTRINGS], timeout=120)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip() == compare.TUNING_PROTOCOL


def test_tuning_protocol_is_the_one_the_committed_settings_record():
  assert configs.load_tuned('mnist1d')['protocol'] == compare.TUNING_PROTOCOL


def test_distributed_initialisation_comes_before_the_data(monkeypatch, tmp_path):
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda *args: calls.append('initialize'))

  def load_dataset(*args):
    calls.append('load_dataset')
    raise data.MissingDataError('stop here')

  monkeypatch.setattr(data, 'load_dataset', load_dataset)
  flags = ['--coordinator-address', '127.0.0.1:1234', '--num-processes', '2', '--process-id', '0']
  assert main.main(['train', *flags]) == 1
  assert calls == ['initialize', 'load_dataset']


def test_no_progress_still_prints_the_final_result_line(digits, capsys):
  train.train_and_evaluate(train.resolve(FAST), QUIET, digits)
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 1 and lines[0].startswith(f'epoch   {FAST.epochs}/{FAST.epochs}'), lines
  assert 'test acc' in lines[0]


def test_train_writes_history_and_step_sizes(tmp_path):
  status = main.main(
    [
      'train',
      '--dataset',
      'digits',
      '--epochs',
      '1',
      '--lr',
      '0.3',
      '--batch-size',
      '32',
      '--no-progress',
      '--out',
      str(tmp_path),
    ]
  )
  assert status == 0
  history = json.loads((tmp_path / 'history.json').read_text())
  assert len(history) == 1 and history[0]['test_accuracy'] > 0.5
  assert len(json.loads((tmp_path / 'learning_rates.json').read_text())) == 1347 // 32


@pytest.mark.parametrize('name', list(schedules.SCHEDULES))
def test_every_registry_entry_builds_and_trains_a_step(name):
  budget = schedules.Budget(total_steps=100, steps_per_epoch=10)
  spec = schedules.SCHEDULES[name]
  hyper = spec.prepare(schedules.knob_value(name, None), budget)
  tx = schedules.build_optimizer(name, 0.1, hyper, budget, momentum=0.9, weight_decay=1e-4)
  params = {'w': jax.numpy.ones(3)}
  state = tx.init(params)
  for _ in range(2):  # a warmup's first step may be 0
    updates, state = tx.update(params, state, params, value=1.0)
  chex.assert_tree_all_finite(updates)
  assert float(train.osd.current_learning_rate(state)) > 0
  chex.assert_trees_all_equal_shapes(spec.eval_params(state, params), params)


def test_registry_entries_carry_their_knob_grid():
  for name, spec in schedules.SCHEDULES.items():
    assert bool(spec.knob) == bool(spec.knob_grid), name
    assert spec.eta0_from in (None, *schedules.SCHEDULES)


def test_mnist1d_shapes_and_determinism():
  first, second = data.load_mnist1d(), data.load_mnist1d()
  assert first.x_train.shape == (4000, 40, 1) and first.x_test.shape == (1000, 40, 1)
  assert first.x_train.dtype == np.float32 and first.y_train.dtype == np.int32
  assert set(np.unique(first.y_train)) == set(range(10))
  chex.assert_trees_all_equal(first.x_train, second.x_train)
  chex.assert_trees_all_close(first.x_train.mean(), 0.0, rtol=1e-7, atol=1e-5)


def test_validation_split_holds_out_training_examples_only():
  dataset = data.load_mnist1d()
  split = dataset.validation_split(**compare.VALIDATION)
  assert len(split.x_train) == 3200 and len(split.x_test) == 800
  assert split.x_test.shape[1:] == (40, 1)
  rows = {row.tobytes() for row in dataset.x_train}
  assert all(row.tobytes() in rows for row in split.x_test)
  again = dataset.validation_split(**compare.VALIDATION)
  chex.assert_trees_all_equal(split.x_test, again.x_test)


@pytest.mark.parametrize('schedule', ['step_decay', 'plateau', 'auto'])
def test_a_vmapped_member_reproduces_the_single_run(schedule, tiny_mnist1d):
  config = train.resolve(
    dataclasses.replace(FAST, dataset='mnist1d', schedule=schedule, batch_size=32, knob=None)
  )
  single = train.train_and_evaluate(config, QUIET, tiny_mnist1d)
  many = sweep.train_many(
    config,
    [sweep.Member(0.05, config.knob, 3), sweep.Member(config.lr, config.knob, 0)],
    tiny_mnist1d,
  )
  chex.assert_trees_all_close(many.learning_rates[1], single.learning_rates, rtol=1e-6)
  for key in ('train_loss', 'test_loss', 'test_accuracy'):
    chex.assert_trees_all_close(
      getattr(many, key)[1],
      np.asarray([row[key] for row in single.history]),
      rtol=2e-4,
      atol=1e-5,
    )


def test_a_spec_given_to_train_many_replaces_the_registry_entry(tiny_mnist1d):
  config = train.resolve(dataclasses.replace(FAST, dataset='mnist1d', schedule='auto', knob=None))
  halved = dataclasses.replace(
    schedules.SCHEDULES['auto'],
    build=lambda eta0, hyper, budget, sgd: sgd.around(osd.auto_step_decay(eta0 / 2)),
  )
  many = sweep.train_many(config, [sweep.Member(0.2, None, 0)], tiny_mnist1d, halved)
  chex.assert_trees_all_close(many.learning_rates, np.full_like(many.learning_rates, 0.1))


def test_compare_writes_table_csv_and_plots(tmp_path, capsys):
  status = main.main(
    [
      'compare',
      '--dataset',
      'digits',
      '--epochs',
      '2',
      '--seeds',
      '2',
      '--batch-size',
      '64',
      '--schedules',
      'step_decay,constant,auto,cosine',
      '--tuned',
      str(ROOT / 'examples/tuned/mnist1d.json'),
      '--out',
      str(tmp_path),
    ]
  )
  assert status == 0
  rows = (tmp_path / 'results.csv').read_text().splitlines()
  assert rows[0].split(',')[:5] == ['schedule', 'seed', 'eta0', 'knob', 'final_train_loss']
  assert 'test_accuracy' in rows[0] and len(rows) == 1 + 4 * 2
  # The step of each run's last update: auto's shows whether it cut.
  assert rows[0].split(',')[-1] == 'final_learning_rate'
  final = {row.split(',')[0]: float(row.split(',')[-1]) for row in rows[1:]}
  assert final['cosine'] < 0.01 * final['constant'], final  # cosine ends near 0, constant at eta0
  table = (tmp_path / 'results.md').read_text()
  assert table.count('\n| ') == 1 + 4 and '95%' in table
  for plot in ('learning_rate', 'train_loss', 'test_error'):
    assert (tmp_path / f'{plot}.png').stat().st_size > 5000
  assert 'step_decay' in capsys.readouterr().out


def test_paired_interval_is_the_t_interval_of_the_differences():
  mean, low, high = compare.paired_interval(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0, 0.0]))
  assert mean == 2.0
  chex.assert_trees_all_close(
    [low, high], [2 - 4.302653 / np.sqrt(3), 2 + 4.302653 / np.sqrt(3)], rtol=1e-6
  )


def test_resume_says_so_and_continues_bit_identically(tmp_path, digits, capsys):
  config = train.resolve(FAST)
  full = train.train_and_evaluate(config, QUIET, digits)
  options = train.Options(checkpoint_dir=str(tmp_path / 'ckpt'), progress=False)
  stopped = train.train_and_evaluate(
    config, dataclasses.replace(options, stop_after_steps=50), digits
  )
  assert not stopped.finished and len(stopped.learning_rates) == 50
  capsys.readouterr()
  resumed = train.train_and_evaluate(config, dataclasses.replace(options, progress=True), digits)
  assert f'resuming from step 50 of 84 in {tmp_path / "ckpt"}' in capsys.readouterr().out
  assert resumed.finished
  chex.assert_trees_all_equal(resumed.learning_rates, full.learning_rates)
  chex.assert_trees_all_equal(train.flat_params(resumed.model), train.flat_params(full.model))
  assert [r['epoch'] for r in resumed.history] == [1, 2]


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, digits):
  options = train.Options(checkpoint_dir=str(tmp_path), stop_after_steps=5, progress=False)
  train.train_and_evaluate(train.resolve(FAST), options, digits)
  other = train.resolve(dataclasses.replace(FAST, schedule='cosine', lr=0.1))
  with pytest.raises(train.UsageError, match=r"schedule \('step_decay' -> 'cosine'\).*lr"):
    train.train_and_evaluate(other, options, digits)
  restarted = train.train_and_evaluate(other, dataclasses.replace(options, restart=True), digits)
  assert len(restarted.learning_rates) == 5


def test_a_second_writer_is_refused(tmp_path, digits):
  options = train.Options(checkpoint_dir=str(tmp_path), progress=False)
  first = train.Checkpoints(options, train.resolve(FAST))
  with pytest.raises(train.UsageError, match='is in use by pid'):
    train.Checkpoints(options, train.resolve(FAST))
  first.close()
  train.Checkpoints(options, train.resolve(FAST)).close()  # free again


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'remove', 'arrays'])
def test_resume_falls_back_past_a_damaged_newest_checkpoint(tmp_path, digits, damage, capsys):
  config = train.resolve(FAST)
  options = train.Options(checkpoint_dir=str(tmp_path), checkpoint_every_steps=20, progress=False)
  train.train_and_evaluate(config, dataclasses.replace(options, stop_after_steps=50), digits)
  newest = tmp_path / '50'
  files = sorted(p for p in newest.rglob('*') if p.is_file() and p.stat().st_size > 0)
  if damage == 'remove':
    for item in newest.iterdir():
      if item.is_dir():
        import shutil

        shutil.rmtree(item)
  if damage == 'arrays':  # the array data alone, whose failed reads orbax wraps in a bare Exception
    files = [path for path in files if path.parent.parent.name.startswith('ocdbt.process')]
  for path in files if damage != 'remove' else []:
    path.write_bytes(b'\xff\x00garbage' if damage == 'garbage' else path.read_bytes()[:3])
  capsys.readouterr()
  resumed = train.train_and_evaluate(config, dataclasses.replace(options, progress=True), digits)
  out = capsys.readouterr().out
  assert 'checkpoint 50' in out and 'cannot be restored' in out
  assert damage != 'arrays' or '(Exception: ' in out, out
  assert 'resuming from step 40 of 84' in out, out
  full = train.train_and_evaluate(config, QUIET, digits)
  chex.assert_trees_all_equal(resumed.learning_rates, full.learning_rates)


def test_checkpoint_restore_lets_other_errors_through(tmp_path, monkeypatch):
  checkpoints = train.Checkpoints(train.Options(checkpoint_dir=str(tmp_path)), train.resolve(FAST))

  def restore(*args, **kwargs):
    raise TypeError('a bug, not a damaged checkpoint')

  monkeypatch.setattr(checkpoints.manager, 'all_steps', lambda: [5])
  monkeypatch.setattr(checkpoints.manager, 'restore', restore)
  with pytest.raises(TypeError, match='a bug'):
    checkpoints.restore(None, {})
  checkpoints.close()


def test_evaluation_in_chunks_equals_the_whole_set_at_once(digits, monkeypatch):
  config = train.resolve(FAST)
  shape, classes = digits.x_train.shape[1:], digits.num_classes
  model = models.create_model(config.model, shape, classes, config.seed)
  x, y = digits.x_test, digits.y_test
  chunk = len(x) // 3 + 1  # the last chunk is shorter
  model.eval()
  logits = model(x)
  expected = {
    'loss': optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(),
    'accuracy': np.mean(np.argmax(logits, -1) == y),
  }
  traced = []
  forward = type(model).__call__
  monkeypatch.setattr(
    type(model), '__call__', lambda self, x: traced.append(x.shape) or forward(self, x)
  )
  metrics = train.evaluate(model, x, y, train.DataParallel(config.batch_size), chunk=chunk)
  chex.assert_trees_all_close(metrics, expected, rtol=1e-6)
  assert len(traced) == 1, traced  # one compilation serves every chunk


SHARDED_RUN = """
import json
import jax
from examples import configs, train
assert jax.device_count() == 8, jax.devices()
config = train.resolve(configs.Config(dataset='digits', epochs=2, lr=0.3, batch_size=32))
result = train.train_and_evaluate(config, train.Options(progress=False))
print(json.dumps(train.flat_params(result.model).tolist()))
"""


def test_eight_devices_match_one():
  out = processes.run_python(['-c', SHARDED_RUN], host_devices=8)
  assert out.returncode == 0, out.stderr[-3000:]
  sharded = np.asarray(json.loads(out.stdout.strip().splitlines()[-1]))
  single = train.train_and_evaluate(
    train.resolve(configs.Config(dataset='digits', epochs=2, lr=0.3, batch_size=32)), QUIET
  )
  assert jax.device_count() == 1
  chex.assert_trees_all_close(sharded, train.flat_params(single.model), rtol=1e-4, atol=1e-5)


def test_batch_must_split_across_devices(monkeypatch):
  monkeypatch.setattr(jax, 'device_count', lambda: 8)
  with pytest.raises(train.UsageError, match='--batch-size 30 must be divisible by the 8 devices'):
    train.DataParallel(30)


@pytest.mark.parametrize(
  ('length', 'kernel', 'stride'), [(40, 5, 2), (20, 3, 2), (5, 3, 2), (7, 3, 1)]
)
def test_conv1d_equals_flax_conv(length, kernel, stride):
  from flax import nnx

  from examples import models

  ours = models.Conv1D(3, 4, kernel, stride, rngs=nnx.Rngs(0))
  reference = nnx.Conv(3, 4, (kernel,), strides=stride, rngs=nnx.Rngs(1))
  reference.kernel[...] = ours.kernel[...]
  ours.bias[...] = reference.bias[...] = jax.numpy.arange(4.0)
  x = jax.random.normal(jax.random.key(length), (2, length, 3))
  chex.assert_trees_all_close(ours(x), reference(x), atol=1e-5)


def _free_port() -> int:
  import socket

  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
  flags = ['train', '--dataset', 'digits', '--epochs', '1', '--lr', '0.3', '--batch-size', '32']
  address = f'127.0.0.1:{_free_port()}'
  jobs = [
    subprocess.Popen(
      [
        sys.executable,
        '-m',
        'examples.main',
        *flags,
        '--out',
        str(tmp_path / f'p{i}'),
        '--coordinator-address',
        address,
        '--num-processes',
        '2',
        '--process-id',
        str(i),
      ],
      env=processes.environment(),
      cwd=ROOT,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    for i in range(2)
  ]
  logs = [job.communicate(timeout=600)[0] for job in jobs]
  assert [job.returncode for job in jobs] == [0, 0], logs
  assert 'epoch   1/1' in logs[0] and 'epoch' not in logs[1]  # printed once per job
  assert not (tmp_path / 'p1').exists()  # outputs from process 0 only
  assert main.main([*flags, '--no-progress', '--out', str(tmp_path / 'single')]) == 0
  for name in ('history.json', 'learning_rates.json'):
    two = json.loads((tmp_path / 'p0' / name).read_text())
    one = json.loads((tmp_path / 'single' / name).read_text())
    chex.assert_trees_all_close(two, one, rtol=1e-5)


def test_readme_and_docs_show_the_committed_mnist1d_results():
  table = (ROOT / 'examples/results/mnist1d/results.md').read_text().strip()
  assert table in (ROOT / 'README.md').read_text()
  assert 'examples/results/mnist1d/results.md' in (ROOT / 'docs/examples.md').read_text()


def test_committed_tuned_settings_are_inside_their_grids():
  tuned = configs.load_tuned('mnist1d')
  assert tuned is not None and tuned['eta0_grid'] == list(compare.ETA0_GRID)
  for name in schedules.COMPARED:
    spec = schedules.SCHEDULES[name]
    if spec.eta0_from:
      continue
    setting = tuned['schedules'][name]
    assert setting['eta0'] in compare.eta0_grid_of(name)[1:-1], name  # never at the grid's edge
    assert setting['knob'] in (spec.knob_grid or (None,)), name


def test_branch_demo_counts_its_compute_and_writes_its_report(tmp_path, tiny_mnist1d, monkeypatch):
  from examples import branch

  traced = []
  train_seeds = sweep.Network.train

  def counted(self, tx, carry, batches, *data):
    traced.append(batches.shape[-2])
    return train_seeds(self, tx, carry, batches, *data)

  monkeypatch.setattr(sweep.Network, 'train', counted)
  config = dataclasses.replace(configs.Config(), model='cnn1d', batch_size=32)
  tuned = configs.load_tuned('mnist1d')
  result = branch.run(config, tiny_mnist1d, [0, 1], stable_steps=16, tuned=tuned)
  assert result.checkpoints == [4, 8, 12, 16] and result.lengths == [5, 10, 15, 20]
  stable = {b - a for a, b in zip([0, *result.checkpoints], result.checkpoints, strict=False)}
  cooldowns = {n - c for c, n in zip(result.checkpoints, result.lengths, strict=True)}
  # One compilation per segment length of the warmup-stable run, one per cosine run.
  assert len(traced) == len(stable | cooldowns) + len(result.lengths), traced
  assert result.compute == {'wsd': 16 + 1 + 2 + 3 + 4, 'cosine': 50}
  for method in ('wsd', 'cosine'):
    chex.assert_shape(list(result.final[method].values()), (4, 2))
    chex.assert_tree_all_finite(result.final[method])
  branch.report(tmp_path, result, seeds=2)
  assert (tmp_path / 'branches.md').read_text().count('\n| ') == 1 + 4
  assert (tmp_path / 'branches.png').stat().st_size > 5000


def test_batch_stream_continues_the_epochs_of_a_single_run():
  stream = data.batch_stream(100, 32, seed=3, steps=7)
  expected = np.concatenate([data.epoch_batches(100, 32, 3, e) for e in range(3)])[:7]
  chex.assert_trees_all_equal(stream, expected)


def test_docs_show_the_committed_branch_results():
  assert 'examples/results/mnist1d-branch/branches.md' in (ROOT / 'docs/examples.md').read_text()
  assert (ROOT / 'examples/results/mnist1d-branch/branches.png').exists()

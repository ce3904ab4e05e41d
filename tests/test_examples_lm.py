"""The language-model example on a tiny corpus: masks, bf16, resume, branched cooldowns, flags."""

import dataclasses
import json
import math
import random

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optax_stepdecay as osd
from examples import configs as mnist_configs
from examples import sweep
from examples import train as mnist_train
from examples.lm import branch
from examples.lm import compare
from examples.lm import configs
from examples.lm import data
from examples.lm import main
from examples.lm import optim
from examples.lm import train
from tests import processes

TINY = configs.Config(
  schedule='step_decay',
  lr=0.01,
  knob=2.0,
  steps=20,
  batch_size=4,
  context=16,
  width=16,
  layers=1,
  heads=2,
)
SIZE_FLAGS = ['--steps', '20', '--batch-size', '4', '--context', '16', '--width', '16']
SIZE_FLAGS += ['--layers', '1', '--heads', '2']
QUIET = mnist_train.Options(progress=False)
WORDS = tuple('def return import class self for in if else x y = + ( ) : pass None True'.split(' '))  # noqa: SIM905


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
  """30 small *.py files (about 5 kB): file 23 and 24 are held out for tuning, 26 for validation."""
  root = tmp_path_factory.mktemp('corpus')
  rng = random.Random(0)
  for i in range(30):
    lines = [' '.join(rng.choice(WORDS) for _ in range(8)) for _ in range(6)]
    (root / f'm{i}.py').write_text('\n'.join(lines) + '\n')
  (root / 'notes.txt').write_text('not python')
  (root / 'site-packages').mkdir()
  (root / 'site-packages' / 'other.py').write_text('x = 1\n' * 1000)
  return root


@pytest.fixture(scope='module')
def corpus(corpus_dir):
  return data.load_corpus(corpus_dir)


def _tuned(path, eta0=0.01):
  settings = {
    name: {'eta0': eta0, 'knob': optim.knob_value(name, None)} for name in optim.SCHEDULES
  }
  path.write_text(json.dumps({'config': dataclasses.asdict(TINY), 'schedules': settings}))
  return path


def test_corpus_is_split_by_file_deterministically(corpus_dir, corpus):
  held_out = [p.name for p in sorted(corpus_dir.glob('*.py')) if data.bucket(p.name) < 10]
  assert held_out == ['m26.py']
  assert corpus.validation.tobytes() == (corpus_dir / 'm26.py').read_bytes()
  assert corpus.info['train_files'] == 29 and corpus.info['validation_files'] == 1
  assert corpus.info['train_bytes'] == len(corpus.train) and corpus.info['python']
  again = data.load_corpus(corpus_dir)
  chex.assert_trees_all_equal(again.train, corpus.train)
  tuning = data.load_corpus(corpus_dir, tuning=True)
  assert tuning.info['validation_files'] == 2 and tuning.info['train_files'] == 27
  assert (corpus_dir / 'm26.py').read_bytes() not in tuning.train.tobytes()
  windows = corpus.windows('train', 16)
  assert windows.shape == ((len(corpus.train) - 1) // 16, 17) and windows.dtype == np.uint8
  chex.assert_trees_all_equal(windows[1], corpus.train[16:33])
  assert (data.stdlib_dir() / 'os.py').is_file()


def test_weight_decay_skips_biases_norms_and_embeddings():
  model = train.create_model(dataclasses.replace(TINY, dtype='float32'), 0)
  params = nnx.state(model, nnx.Param)
  mask = optim.decay_mask(params)
  decayed = {
    jax.tree_util.keystr(path) for path, on in jax.tree_util.tree_leaves_with_path(mask) if on
  }
  assert decayed and all(name.endswith("['kernel'].value") for name in decayed), decayed
  assert len(decayed) == 6  # query, key, value, out, up, down
  # Zero gradients after the warmup: Adam's step is 0, so only the decay moves the parameters.
  tx = optim.Recipe.of(dataclasses.replace(TINY, weight_decay=0.5))(0.1)
  pure = nnx.as_pure(params)
  state = tx.init(pure)
  zeros = jax.tree.map(jnp.zeros_like, pure)
  for _ in range(2):  # the warmup's first step is 0
    updates, state = tx.update(zeros, state, pure, value=0.0)
  rate = float(osd.current_learning_rate(state))
  assert rate == pytest.approx(0.1)
  for (path, update), on in zip(
    jax.tree_util.tree_leaves_with_path(updates), jax.tree.leaves(mask), strict=True
  ):
    leaf = pure
    for key in path:
      leaf = leaf[key.key]
    expected = -rate * 0.5 * np.asarray(leaf) if on else np.zeros_like(leaf)
    chex.assert_trees_all_close(update, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
def test_dtype_of_parameters_activations_and_updates(dtype, corpus):
  config = dataclasses.replace(TINY, dtype=dtype)
  kind = jnp.dtype(dtype)
  model = train.create_model(config, 0)
  assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))} == {kind}
  tokens = jnp.asarray(corpus.windows('train', 16)[:4, :-1])
  hidden = model.embed(tokens.astype(jnp.int32)) + model.position[...]
  assert hidden.dtype == kind
  assert model.blocks[0](hidden, nnx.make_causal_mask(tokens)).dtype == kind
  assert model(tokens).dtype == jnp.float32  # the loss is computed in float32
  tx = optim.Recipe.of(config)(config.lr)
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  updates, _ = tx.update(params, tx.init(params), params, value=0.0)  # gradients like params
  assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {kind}
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  windows = corpus.windows('train', 16)[:4]
  for _ in range(2):
    loss, rate = mnist_train.train_step(model, optimizer, windows[:, :-1], windows[:, 1:])
  assert np.isfinite(float(loss)) and float(rate) > 0
  assert {leaf.dtype for leaf in jax.tree.leaves(nnx.state(model, nnx.Param))} == {kind}


def test_resume_says_so_and_continues_bit_identically(tmp_path, corpus, capsys):
  full = train.train_and_evaluate(TINY, QUIET, corpus)
  options = mnist_train.Options(checkpoint_dir=str(tmp_path / 'ckpt'), progress=False)
  stopped = train.train_and_evaluate(TINY, dataclasses.replace(options, stop_after_steps=7), corpus)
  assert not stopped.finished and len(stopped.learning_rates) == 7
  capsys.readouterr()
  resumed = train.train_and_evaluate(TINY, dataclasses.replace(options, progress=True), corpus)
  out = capsys.readouterr().out
  assert f'resuming from step 7 of 20 in {tmp_path / "ckpt"}' in out
  assert resumed.finished and [r['step'] for r in resumed.history] == [5, 10, 15, 20]
  chex.assert_trees_all_equal(resumed.learning_rates, full.learning_rates)
  chex.assert_trees_all_equal(
    mnist_train.flat_params(resumed.model), mnist_train.flat_params(full.model)
  )
  assert resumed.history == full.history


def test_a_member_of_many_runs_reproduces_the_single_run(corpus):
  single = train.train_and_evaluate(TINY, QUIET, corpus)
  runs = train.Runs(TINY, corpus)
  many = runs.train(TINY, [sweep.Member(0.02, 2.0, 3), sweep.Member(TINY.lr, 2.0, TINY.seed)])
  assert many.steps == [r['step'] for r in single.history]
  chex.assert_trees_all_close(many.learning_rates[1], single.learning_rates, rtol=1e-6)
  for key in ('train_bpb', 'validation_bpb'):
    expected = np.asarray([r[key] for r in single.history], np.float32)
    chex.assert_trees_all_close(getattr(many, key)[1], expected, rtol=2e-3)


def test_cooldowns_branch_from_restored_checkpoints(tmp_path, corpus):
  tuned = {
    'schedules': {'wsd': {'eta0': 0.01, 'knob': None}, 'cosine': {'eta0': 0.02, 'knob': None}}
  }
  result = branch.run(TINY, corpus, [0, 1], tuned, checkpoint_dir=tmp_path / 'ckpt')
  assert result.checkpoints == [4, 8, 12, 16] and result.lengths == [5, 10, 15, 20]
  assert sorted(p.name for p in (tmp_path / 'ckpt').iterdir()) == ['12', '16', '4', '8']
  assert result.compute == {'wsd': 16 + 1 + 2 + 3 + 4, 'cosine': 50}
  warmup = optim.warmup_steps(TINY.steps)
  for start, length, rates in zip(
    result.checkpoints, result.lengths, result.learning_rates['wsd'], strict=True
  ):
    expected = osd.wsd_schedule(
      0.01, warmup_steps=warmup, stable_steps=start - warmup, decay_steps=length - start
    )
    chex.assert_trees_all_close(rates, np.broadcast_to(expected(np.arange(length)), rates.shape))
  for length, rates in zip(result.lengths, result.learning_rates['cosine'], strict=True):
    cosine = optax.warmup_cosine_decay_schedule(0.0, 1.0, warmup, length)
    chex.assert_trees_all_close(rates[0], 0.02 * cosine(np.arange(length)), rtol=1e-5)
  for method in ('wsd', 'cosine'):
    chex.assert_shape(list(result.final[method].values()), (4, 2))
    chex.assert_tree_all_finite(result.final[method])
  # The longest branch is the wsd schedule of the whole run, bit for bit.
  wsd = train.resolve(dataclasses.replace(TINY, schedule='wsd', lr=0.01))
  whole = train.Runs(wsd, corpus).train(wsd, [sweep.Member(0.01, None, 0)])
  assert result.final['wsd']['validation_bpb'][-1, 0] == whole.validation_bpb[0, -1]
  branch.report(tmp_path, result, TINY, corpus.info, seeds=2)
  assert (tmp_path / 'branches.md').read_text().count('\n| ') == 1 + 4
  assert (tmp_path / 'branches.png').stat().st_size > 5000


def test_compare_writes_results_csv_table_and_plot(tmp_path, corpus_dir, capsys):
  argv = ['compare', *SIZE_FLAGS, '--corpus', str(corpus_dir), '--seeds', '2']
  argv += ['--schedules', 'step_decay,wsd', '--tuned', str(_tuned(tmp_path / 't.json'))]
  assert main.main([*argv, '--out', str(tmp_path / 'out')]) == 0
  rows = (tmp_path / 'out' / 'results.csv').read_text().splitlines()
  assert rows[0] == 'schedule,seed,eta0,knob,final_train_loss,validation_bpb'
  assert [r.split(',')[:2] for r in rows[1:]] == [
    ['step_decay', '0'],
    ['step_decay', '1'],
    ['wsd', '0'],
    ['wsd', '1'],
  ]
  table = (tmp_path / 'out' / 'results.md').read_text()
  assert table.count('\n| ') == 1 + 2 and '95%' in table and corpus_dir.name in table
  corpus_info = json.loads((tmp_path / 'out' / 'corpus.json').read_text())
  assert corpus_info['python'] and corpus_info['train_bytes'] > 4000
  assert (tmp_path / 'out' / 'validation_bpb.png').stat().st_size > 5000
  assert 'note:' not in capsys.readouterr().out  # tuned with these settings


def test_tune_writes_its_settings_outside_the_tracked_files(tmp_path, corpus_dir, monkeypatch):
  monkeypatch.setattr(compare, 'ETA0_GRID', (0.003, 0.01, 0.03))
  monkeypatch.setattr(compare, 'TUNING_SEEDS', (1000,))
  spec = dataclasses.replace(optim.SCHEDULES['step_decay'], knob_grid=(2.0, 10.0))
  monkeypatch.setitem(optim.SCHEDULES, 'step_decay', spec)
  argv = ['tune', *SIZE_FLAGS, '--corpus', str(corpus_dir), '--schedules', 'step_decay']
  assert main.main([*argv, '--out', str(tmp_path)]) == 0
  tuned = json.loads((tmp_path / 'lm.json').read_text())
  assert tuned['corpus']['split'] == 'tuning' and tuned['config']['steps'] == 20
  setting = tuned['schedules']['step_decay']
  assert len(setting['scores']) == 3 * 2 and setting['knob'] in (2.0, 10.0)
  assert setting['eta0'] in (0.003, 0.01, 0.03)
  best = min(setting['scores'], key=lambda s: s['validation_bpb'])
  assert (best['eta0'], best['knob']) == (setting['eta0'], setting['knob'])


def test_committed_tuned_settings_follow_the_protocol():
  tuned = mnist_configs.load_tuned('lm')
  assert tuned is not None
  assert tuned['protocol'] == compare.TUNING_PROTOCOL
  assert tuned['eta0_grid'] == list(compare.ETA0_GRID)
  assert tuned['config'] == dataclasses.asdict(configs.Config())
  for name, spec in optim.SCHEDULES.items():
    assert tuned['schedules'][name]['knob'] in (spec.knob_grid or (None,)), name


def test_readme_and_docs_show_the_committed_lm_results():
  results = processes.ROOT / 'examples/results/lm'
  table = (results / 'results.md').read_text().strip()
  assert table in (processes.ROOT / 'README.md').read_text()
  docs = (processes.ROOT / 'docs/examples.md').read_text()
  for name in ('results.md', 'branches.md', 'validation_bpb.png', 'branches.png'):
    assert f'examples/results/lm/{name}' in docs and (results / name).exists(), name


BAD_FLAGS = [
  (['train', '--steps', '30'], '--steps must be a multiple of 20'),
  (['train', '--steps', '0'], '--steps'),
  (['train', '--lr', 'nan'], '--lr'),
  (['train', '--lr', '-1'], '--lr'),
  (['train', '--dtype', 'float16'], '--dtype'),
  (['train', '--schedule', 'linear'], '--schedule'),
  (['train', '--heads', '3'], '--heads 3 must divide --width 64'),
  (['train', '--weight-decay', '-0.1'], '--weight-decay'),
  (['train', '--schedule', 'step_decay', '--knob', '0.5', '--lr', '0.1'], '--knob 0.5'),
  (['train', '--corpus', '/nonexistent', '--lr', '0.1'], '--corpus /nonexistent'),
  (['train', '--stop-after-steps', '0'], '--stop-after-steps'),
  (['compare', '--seeds', '0'], '--seeds'),
  (['compare', '--schedules', 'wsd,linear'], '--schedules'),
  (['compare', '--tuned', '/nonexistent/lm.json'], '--tuned'),
  (['branch', '--lr', '0.1'], '--lr'),
  (['tune', '--steps', '-20'], '--steps'),
]


@pytest.mark.parametrize(('argv', 'named'), BAD_FLAGS, ids=[' '.join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_2_with_one_line_naming_it(argv, named, capsys):
  processes.assert_one_line_usage_error(main.main, argv, named, capsys)


def test_settings_that_need_the_corpus_exit_2_with_one_line(tmp_path, corpus_dir, capsys):
  flags = [*SIZE_FLAGS, '--corpus', str(corpus_dir), '--no-progress']
  assert main.main(['train', *flags, '--batch-size', '5000', '--lr', '0.1']) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and '--batch-size 5000 is larger than' in err, err
  with pytest.raises(train.UsageError, match='no tuned eta0 for --schedule wsd'):
    train.resolve(dataclasses.replace(TINY, schedule='wsd', lr=None), {'schedules': {}})


def test_resume_with_other_settings_is_refused_naming_them(tmp_path, corpus_dir, capsys):
  flags = ['train', *SIZE_FLAGS, '--corpus', str(corpus_dir), '--no-progress', '--lr', '0.01']
  flags += ['--checkpoint-dir', str(tmp_path)]
  assert main.main([*flags, '--stop-after-steps', '3']) == 0
  capsys.readouterr()
  assert main.main([*flags, '--weight-decay', '0.2']) == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1
  assert 'holds a run with other settings: weight_decay (0.1 -> 0.2)' in err
  out = tmp_path / 'out'
  assert main.main([*flags, '--weight-decay', '0.2', '--restart', '--out', str(out)]) == 0
  assert len(json.loads((out / 'learning_rates.json').read_text())) == 20
  assert capsys.readouterr().out.startswith('step     20/20')


def test_help_shows_defaults_and_every_schedule(capsys):
  for command in main.COMMANDS:
    with pytest.raises(SystemExit):
      main.main([command, '--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert '(default: bfloat16)' in text and '(default: 800)' in text, command
    for name in optim.SCHEDULES:
      assert name in text
    assert '(default: None)' not in text


def test_bits_per_byte_is_the_cross_entropy_in_base_2(corpus):
  runs = train.Runs(TINY, corpus)
  carry = runs.init(optim.Recipe.of(TINY), [0.01], [0])
  bits = runs.evaluate(carry)['validation'][0]
  model = nnx.merge(runs.network.graphdef, jax.tree.map(lambda x: x[0], carry[0]), nnx.State({}))
  windows = runs.samples['validation']
  loss = optax.softmax_cross_entropy_with_integer_labels(
    model(windows[:, :-1]), windows[:, 1:].astype(np.int32)
  ).mean()
  assert bits == pytest.approx(float(loss) / math.log(2), rel=1e-5)

"""The examples' loaders read the real formats, checked on tiny files written here."""

import gzip
import pickle
import struct

import chex
import numpy as np
import pytest

from examples import data


def write_idx(path, array, compress=False):
  header = struct.pack('>HBB', 0, 0x08, array.ndim) + struct.pack(f'>{array.ndim}I', *array.shape)
  payload = header + array.astype(np.uint8).tobytes()
  (gzip.open if compress else open)(path, 'wb').write(payload)


@pytest.mark.parametrize('compress', [False, True])
def test_mnist_idx_files(tmp_path, compress):
  rng = np.random.default_rng(0)
  arrays = {
    'train_images': rng.integers(0, 256, (5, 28, 28)),
    'train_labels': rng.integers(0, 10, 5),
    'test_images': rng.integers(0, 256, (3, 28, 28)),
    'test_labels': rng.integers(0, 10, 3),
  }
  for key, name in data.MNIST_FILES.items():
    write_idx(tmp_path / (name + ('.gz' if compress else '')), arrays[key], compress)
  dataset = data.load_dataset('mnist', tmp_path)
  assert dataset.x_train.shape == (5, 28, 28, 1) and dataset.x_test.shape == (3, 28, 28, 1)
  chex.assert_trees_all_close(dataset.x_train[..., 0], arrays['train_images'] / 255.0, rtol=1e-6)
  chex.assert_trees_all_equal(dataset.y_test, arrays['test_labels'])


def test_idx_with_wrong_size_is_rejected(tmp_path):
  path = tmp_path / 'bad'
  path.write_bytes(struct.pack('>HBB', 0, 8, 1) + struct.pack('>I', 10) + bytes(3))
  with pytest.raises(ValueError, match='header says'):
    data.read_idx(path)


def write_cifar_batch(path, images, labels, label_key):
  rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # R, G, B planes per row
  with open(path, 'wb') as f:
    pickle.dump({b'data': rows.astype(np.uint8), label_key: list(labels)}, f)


@pytest.mark.parametrize(('name', 'classes'), [('cifar10', 10), ('cifar100', 100)])
def test_cifar_python_pickles(tmp_path, name, classes):
  rng = np.random.default_rng(1)
  folder, train, test, key = (
    (data.CIFAR10_DIR, data.CIFAR10_TRAIN, data.CIFAR10_TEST, b'labels')
    if classes == 10
    else (data.CIFAR100_DIR, data.CIFAR100_TRAIN, data.CIFAR100_TEST, b'fine_labels')
  )
  (tmp_path / folder).mkdir()
  written = {}
  for file in train + test:
    images = rng.integers(0, 256, (2, 32, 32, 3))
    labels = rng.integers(0, classes, 2)
    write_cifar_batch(tmp_path / folder / file, images, labels, key)
    written[file] = (images, labels)
  dataset = data.load_dataset(name, tmp_path)
  assert dataset.x_train.shape == (2 * len(train), 32, 32, 3)
  assert dataset.num_classes == classes
  first_images, first_labels = written[train[0]]
  chex.assert_trees_all_equal(dataset.y_train[:2], first_labels)
  # Normalised per channel, so the pixel order survives as the order of values.
  normalised = dataset.x_train[:2]
  chex.assert_trees_all_equal(
    np.argsort(normalised[..., 0].ravel(), kind='stable'),
    np.argsort(first_images[..., 0].ravel(), kind='stable'),
  )


@pytest.mark.parametrize('name', ['mnist', 'cifar10', 'cifar100'])
def test_missing_files_say_which_and_where_from(tmp_path, name):
  with pytest.raises(data.MissingDataError) as error:
    data.load_dataset(name, tmp_path)
  message = str(error.value)
  assert str(tmp_path) in message and 'never download' in message
  assert ('t10k-images' in message) if name == 'mnist' else ('python version' in message)


def test_digits_is_bundled_and_split():
  dataset = data.load_dataset('digits')
  assert dataset.x_train.shape[1:] == (8, 8, 1)
  assert len(dataset.x_train) + len(dataset.x_test) == 1797
  assert dataset.x_train.min() >= 0.0 and dataset.x_train.max() <= 1.0


def test_epoch_batches_are_a_deterministic_permutation():
  a = data.epoch_batches(100, 32, seed=3, epoch=2)
  chex.assert_trees_all_equal(a, data.epoch_batches(100, 32, seed=3, epoch=2))
  assert a.shape == (3, 32) and len(np.unique(a)) == 96
  assert not np.array_equal(a, data.epoch_batches(100, 32, seed=3, epoch=3))


def test_augment_keeps_shape_and_pixels():
  images = np.random.default_rng(0).random((4, 32, 32, 3)).astype(np.float32)
  out = data.augment(images, np.random.default_rng(1))
  assert out.shape == images.shape
  assert np.isin(out[0], images[0]).all()

"""Datasets for the examples, all offline.

``digits`` is scikit-learn's bundled 8x8 handwritten digits (no download);
``mnist``, ``cifar10`` and ``cifar100`` read the standard files from
``--data-dir`` (MNIST's IDX files, CIFAR's "python version" pickles).
"""

from __future__ import annotations

import dataclasses
import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

DATASETS = ('digits', 'mnist', 'cifar10', 'cifar100')

MNIST_FILES = {
  'train_images': 'train-images-idx3-ubyte',
  'train_labels': 'train-labels-idx1-ubyte',
  'test_images': 't10k-images-idx3-ubyte',
  'test_labels': 't10k-labels-idx1-ubyte',
}
CIFAR10_DIR, CIFAR10_TRAIN, CIFAR10_TEST = (
  'cifar-10-batches-py',
  [f'data_batch_{i}' for i in range(1, 6)],
  ['test_batch'],
)
CIFAR100_DIR, CIFAR100_TRAIN, CIFAR100_TEST = 'cifar-100-python', ['train'], ['test']
SOURCES = {
  'mnist': 'the MNIST database (train/t10k IDX files, optionally .gz)',
  'cifar10': 'the "CIFAR-10 python version" archive (cifar-10-python.tar.gz), extracted',
  'cifar100': 'the "CIFAR-100 python version" archive (cifar-100-python.tar.gz), extracted',
}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Train and test arrays: images are float32 NHWC (or NF), labels int32."""

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int

  def validation_split(self, fraction: float, seed: int) -> Dataset:
    """Holds out part of the training set as the test set (for tuning)."""
    order = np.random.default_rng(seed).permutation(len(self.x_train))
    held_out = int(len(order) * fraction)
    val, train = order[:held_out], order[held_out:]
    return dataclasses.replace(
      self,
      name=f'{self.name}-validation',
      x_train=self.x_train[train],
      y_train=self.y_train[train],
      x_test=self.x_train[val],
      y_test=self.y_train[val],
    )


class MissingDataError(FileNotFoundError):
  """The dataset's files are not in the data directory."""


def _require(paths: list[Path], dataset: str, data_dir: Path) -> None:
  missing = [p for p in paths if not p.exists()]
  if missing:
    names = ', '.join(str(p) for p in missing)
    raise MissingDataError(
      f'{dataset}: missing {names}. Put {SOURCES[dataset]} in --data-dir {data_dir}; '
      'the examples never download anything.'
    )


def load_digits_dataset(test_fraction: float = 0.25, seed: int = 0) -> Dataset:
  """scikit-learn's bundled digits: 1,797 8x8 images, 10 classes, a stratified split."""
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  digits = load_digits()
  images = (digits.images / 16.0).astype(np.float32)[..., None]  # 8x8x1 in [0, 1]
  labels = digits.target.astype(np.int32)
  x_train, x_test, y_train, y_test = train_test_split(
    images, labels, test_size=test_fraction, random_state=seed, stratify=labels
  )
  return Dataset('digits', x_train, y_train, x_test, y_test, 10)


def read_idx(path: Path) -> np.ndarray:
  """Reads an IDX file (MNIST's format), gzipped or not."""
  opener = gzip.open if path.suffix == '.gz' else open
  with opener(path, 'rb') as f:
    zero, dtype_code, ndim = struct.unpack('>HBB', f.read(4))
    if zero != 0 or dtype_code != 0x08:
      raise ValueError(f'{path} is not an unsigned-byte IDX file.')
    shape = struct.unpack(f'>{ndim}I', f.read(4 * ndim))
    data = np.frombuffer(f.read(), dtype=np.uint8)
  if data.size != int(np.prod(shape)):
    raise ValueError(f'{path}: header says {shape}, found {data.size} bytes.')
  return data.reshape(shape)


def _idx_path(data_dir: Path, name: str) -> Path:
  plain = data_dir / name
  return plain if plain.exists() else data_dir / f'{name}.gz'


def load_mnist(data_dir: Path) -> Dataset:
  paths = {key: _idx_path(data_dir, name) for key, name in MNIST_FILES.items()}
  _require(list(paths.values()), 'mnist', data_dir)
  arrays = {key: read_idx(path) for key, path in paths.items()}

  def images(a):
    return (a.astype(np.float32) / 255.0)[..., None]

  return Dataset(
    'mnist',
    images(arrays['train_images']),
    arrays['train_labels'].astype(np.int32),
    images(arrays['test_images']),
    arrays['test_labels'].astype(np.int32),
    10,
  )


def read_cifar_batch(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
  """One CIFAR pickle: N x 3072 uint8 rows (RGB planes) and its labels."""
  with open(path, 'rb') as f:
    batch = pickle.load(f, encoding='bytes')
  data = np.asarray(batch[b'data'], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return data, np.asarray(batch[label_key], dtype=np.int32)


def load_cifar(data_dir: Path, num_classes: int) -> Dataset:
  name = 'cifar10' if num_classes == 10 else 'cifar100'
  folder, train_files, test_files, label_key = (
    (CIFAR10_DIR, CIFAR10_TRAIN, CIFAR10_TEST, b'labels')
    if num_classes == 10
    else (CIFAR100_DIR, CIFAR100_TRAIN, CIFAR100_TEST, b'fine_labels')
  )
  root = data_dir / folder
  _require([root / f for f in train_files + test_files], name, data_dir)

  def load(files):
    parts = [read_cifar_batch(root / f, label_key) for f in files]
    x = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    return x, np.concatenate([p[1] for p in parts])

  (x_train, y_train), (x_test, y_test) = load(train_files), load(test_files)
  mean, std = x_train.mean(axis=(0, 1, 2)), x_train.std(axis=(0, 1, 2))
  return Dataset(name, (x_train - mean) / std, y_train, (x_test - mean) / std, y_test, num_classes)


def load_dataset(name: str, data_dir: Path | str = 'data') -> Dataset:
  """Loads a dataset by name; raises MissingDataError naming the files it needs."""
  data_dir = Path(data_dir)
  if name == 'digits':
    return load_digits_dataset()
  if name == 'mnist':
    return load_mnist(data_dir)
  if name in ('cifar10', 'cifar100'):
    return load_cifar(data_dir, 10 if name == 'cifar10' else 100)
  raise ValueError(f'unknown dataset {name!r}; choose from {DATASETS}.')


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """CIFAR augmentation: random crop with 4 pixels of padding, random horizontal flip."""
  n, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)), mode='reflect')
  dy, dx = rng.integers(0, 9, n), rng.integers(0, 9, n)
  rows = dy[:, None] + np.arange(h)[None, :]
  cols = dx[:, None] + np.arange(w)[None, :]
  cropped = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
  flip = rng.random(n) < 0.5
  cropped[flip] = cropped[flip, :, ::-1]
  return cropped


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """The index batches of one epoch: a permutation fixed by (seed, epoch), last partial dropped.

  Deterministic, so a run resumed mid-epoch sees exactly the batches it would have.
  """
  order = np.random.default_rng([seed, epoch]).permutation(num_examples)
  steps = num_examples // batch_size
  return order[: steps * batch_size].reshape(steps, batch_size)

"""The corpus: the Python standard library's own ``*.py`` files, as bytes. Nothing is downloaded.

Files are split by a hash of their path relative to the corpus directory, so
the split is the same on every machine with the same Python: 10% of the files
(hash bucket 0-9 of 100) are validation data, the rest training data. Tuning
holds out a further 10% of the files (bucket 10-19) from the training data
and never sees the validation files. The training and evaluation sequences are
windows of ``context + 1`` bytes (input and next-byte target) that start every
``context`` bytes of the files concatenated in path order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import platform
import sysconfig
from pathlib import Path

import numpy as np

VALIDATION = range(0, 10)  # hash buckets of 100
TUNING_VALIDATION = range(10, 20)
EVALUATION_WINDOWS = 512  # a fixed sample of the training and of the validation windows
SKIPPED = {'site-packages', 'dist-packages', '__pycache__'}


class CorpusError(ValueError):
  """The corpus cannot give training and validation data (the command line exits 2)."""


def stdlib_dir() -> Path:
  return Path(sysconfig.get_paths()['stdlib'])


def bucket(relative_path: str) -> int:
  """A file's hash bucket, 0-99, from its path relative to the corpus directory."""
  digest = hashlib.sha256(relative_path.encode()).digest()
  return int.from_bytes(digest[:8], 'big') % 100


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Training and validation bytes, and what they were made from."""

  train: np.ndarray  # uint8, the training files concatenated
  validation: np.ndarray  # uint8
  info: dict  # directory, Python version, files and bytes of each split

  def windows(self, split: str, context: int) -> np.ndarray:
    """Every window of ``context + 1`` bytes of a split, starting every ``context`` bytes."""
    stream = getattr(self, split)
    count = (len(stream) - 1) // context
    if count < 1:
      raise CorpusError(
        f'corpus {self.info["directory"]}: the {split} files hold {len(stream)} bytes, '
        f'fewer than --context {context} + 1'
      )
    view = np.lib.stride_tricks.sliding_window_view(stream, context + 1)
    return np.ascontiguousarray(view[: count * context : context])


def load_corpus(directory: Path | None = None, *, tuning: bool = False) -> Corpus:
  """Reads every ``*.py`` file under ``directory`` (default: the standard library) and splits it.

  With ``tuning``, the validation files are left out and the training files are
  split again: the tuning validation data is bucket 10-19.
  """
  root = Path(directory) if directory is not None else stdlib_dir()
  if not root.is_dir():
    raise CorpusError(f'--corpus {root}: no such directory')
  paths = sorted(
    (p.relative_to(root).as_posix(), p)
    for p in root.rglob('*.py')
    if p.is_file() and not SKIPPED & set(p.relative_to(root).parts)
  )
  held_out = TUNING_VALIDATION if tuning else VALIDATION
  parts: dict[str, list[bytes]] = {'train': [], 'validation': []}
  for relative, path in paths:
    kind = bucket(relative)
    if tuning and kind in VALIDATION:
      continue
    parts['validation' if kind in held_out else 'train'].append(path.read_bytes())
  streams = {k: np.frombuffer(b''.join(v), np.uint8) for k, v in parts.items()}
  info = {
    'directory': str(root),
    'stdlib': directory is None,
    'python': platform.python_version(),
    'split': 'tuning' if tuning else 'comparison',
    **{f'{k}_files': len(v) for k, v in parts.items()},
    **{f'{k}_bytes': len(s) for k, s in streams.items()},
  }
  return Corpus(streams['train'], streams['validation'], info)


def evaluation_sample(windows: np.ndarray, size: int = EVALUATION_WINDOWS) -> np.ndarray:
  """A fixed sample of ``size`` windows (all of them if fewer), the same for every run."""
  if len(windows) <= size:
    return windows
  return windows[np.sort(np.random.default_rng(0).choice(len(windows), size, replace=False))]

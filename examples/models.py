"""Flax NNX models for the examples: an MLP, a small CNN and ResNet-20."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class MLP(nnx.Module):
  """Flatten, then ReLU hidden layers (the paper's MNIST net is 784-100-10)."""

  def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
    sizes = [in_features, *hidden]
    self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)])
    self.out = nnx.Linear(sizes[-1], num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(x.shape[0], -1)
    for layer in self.hidden:
      x = nnx.relu(layer(x))
    return self.out(x)


class SmallCNN(nnx.Module):
  """Two 3x3 conv layers with max pooling, then a linear classifier."""

  def __init__(self, channels: int, num_classes: int, image_size: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(channels, 32, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(32, 64, (3, 3), rngs=rngs)
    pooled = image_size // 4
    self.out = nnx.Linear(64 * pooled * pooled, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
    x = nnx.max_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
    return self.out(x.reshape(x.shape[0], -1))


class ResidualBlock(nnx.Module):
  def __init__(self, in_channels: int, channels: int, stride: int, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(in_channels, channels, (3, 3), strides=stride, use_bias=False, rngs=rngs)
    self.bn1 = nnx.BatchNorm(channels, rngs=rngs)
    self.conv2 = nnx.Conv(channels, channels, (3, 3), use_bias=False, rngs=rngs)
    self.bn2 = nnx.BatchNorm(channels, rngs=rngs)
    self.project = stride != 1 or in_channels != channels
    self.stride, self.pad = stride, channels - in_channels

  def __call__(self, x: jax.Array) -> jax.Array:
    y = nnx.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.project:  # option A of He et al.: subsample and zero-pad the channels
      x = x[:, :: self.stride, :: self.stride, :]
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (self.pad // 2, self.pad - self.pad // 2)))
    return nnx.relu(x + y)


class ResNet20(nnx.Module):
  """He et al.'s ResNet-20 for 32x32 images: 3 stages of 3 blocks, 16/32/64 channels."""

  def __init__(self, channels: int, num_classes: int, *, rngs: nnx.Rngs, blocks_per_stage: int = 3):
    self.stem = nnx.Conv(channels, 16, (3, 3), use_bias=False, rngs=rngs)
    self.stem_bn = nnx.BatchNorm(16, rngs=rngs)
    blocks, in_channels = [], 16
    for stage, width in enumerate((16, 32, 64)):
      for i in range(blocks_per_stage):
        stride = 2 if stage > 0 and i == 0 else 1
        blocks.append(ResidualBlock(in_channels, width, stride, rngs=rngs))
        in_channels = width
    self.blocks = nnx.List(blocks)
    self.out = nnx.Linear(64, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = nnx.relu(self.stem_bn(self.stem(x)))
    for block in self.blocks:
      x = block(x)
    return self.out(x.mean(axis=(1, 2)))


MODELS = ('mlp', 'cnn', 'resnet20')


def create_model(
  name: str, image_shape: tuple[int, ...], num_classes: int, seed: int
) -> nnx.Module:
  """Builds a model by name for images of shape (H, W, C)."""
  rngs = nnx.Rngs(seed)
  height, _, channels = image_shape
  if name == 'mlp':
    return MLP(int(jnp.prod(jnp.array(image_shape))), [100], num_classes, rngs=rngs)
  if name == 'cnn':
    return SmallCNN(channels, num_classes, height, rngs=rngs)
  if name == 'resnet20':
    return ResNet20(channels, num_classes, rngs=rngs)
  raise ValueError(f'unknown model {name!r}; choose from {MODELS}.')

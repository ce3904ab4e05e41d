"""Flax NNX models for the examples: an MLP, a 1-D CNN, a small 2-D CNN and ResNet-20."""

from __future__ import annotations

import itertools
import math
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


class Conv1D(nnx.Module):
  """A strided 1-D convolution with 'SAME' padding, as ``nnx.Conv`` computes it.

  It multiplies the unfolded input patches by the kernel instead of calling
  XLA's convolution: on CPU that is about six times faster for these tiny
  convolutions, and it stays a plain batched matmul under ``jax.vmap`` (a
  vmapped ``nnx.Conv`` becomes a grouped convolution). The kernel has
  ``nnx.Conv``'s layout, ``(kernel_size, in_features, out_features)``.
  """

  def __init__(
    self, in_features: int, out_features: int, kernel_size: int, stride: int, *, rngs: nnx.Rngs
  ):
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (kernel_size, in_features, out_features)))
    self.bias = nnx.Param(jnp.zeros(out_features))
    self.kernel_size, self.stride = kernel_size, stride

  def __call__(self, x: jax.Array) -> jax.Array:
    length = x.shape[1]
    out_length = -(-length // self.stride)
    padding = max((out_length - 1) * self.stride + self.kernel_size - length, 0)
    x = jnp.pad(x, ((0, 0), (padding // 2, padding - padding // 2), (0, 0)))
    starts = jnp.arange(out_length) * self.stride
    patches = x[:, starts[:, None] + jnp.arange(self.kernel_size)[None, :], :]
    return jnp.einsum('nlki,kio->nlo', patches, self.kernel[...]) + self.bias[...]


class CNN1D(nnx.Module):
  """Three strided 1-D conv layers with ReLU, then a linear classifier (for MNIST-1D).

  The shape of Greydanus's (2020) MNIST-1D baseline CNN: kernel sizes 5, 3, 3,
  stride 2, so a length-40 sequence becomes 5 positions of ``channels``.
  """

  def __init__(self, length: int, channels: int, num_classes: int, *, rngs: nnx.Rngs):
    self.convs = nnx.List(
      [
        Conv1D(1, channels, 5, 2, rngs=rngs),
        Conv1D(channels, channels, 3, 2, rngs=rngs),
        Conv1D(channels, channels, 3, 2, rngs=rngs),
      ]
    )
    self.out = nnx.Linear(channels * -(-length // 8), num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    for conv in self.convs:
      x = nnx.relu(conv(x))
    return self.out(x.reshape(x.shape[0], -1))


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


MODELS = {
  'mlp': (
    'inputs of any shape',
    lambda shape, classes, rngs: MLP(math.prod(shape), [100], classes, rngs=rngs),
  ),
  'cnn1d': (
    'sequences (L, 1)',
    lambda shape, classes, rngs: CNN1D(shape[0], 32, classes, rngs=rngs),
  ),
  'cnn': (
    'images (H, W, C)',
    lambda shape, classes, rngs: SmallCNN(shape[2], classes, shape[0], rngs=rngs),
  ),
  'resnet20': ('32x32 images', lambda shape, classes, rngs: ResNet20(shape[2], classes, rngs=rngs)),
}


def create_model(
  name: str, input_shape: tuple[int, ...], num_classes: int, seed: int
) -> nnx.Module:
  """Builds a model by name for inputs of shape ``input_shape`` (no batch axis)."""
  if name not in MODELS:
    raise ValueError(f'unknown model {name!r}; choose from {sorted(MODELS)}.')
  return MODELS[name][1](tuple(input_shape), num_classes, nnx.Rngs(seed))

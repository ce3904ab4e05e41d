"""A small decoder-only transformer over bytes (vocabulary 256), in Flax NNX.

Pre-norm blocks of causal self-attention and a GELU MLP, learned position
embeddings and an output head tied to the byte embedding. ``dtype`` sets the
parameters and the activations alike (bfloat16 or float32); the logits are
returned in float32 so that the loss is computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

VOCAB = 256
DTYPES = {'bfloat16': jnp.bfloat16, 'float32': jnp.float32}


class Block(nnx.Module):
  """x + attention(norm(x)), then x + mlp(norm(x))."""

  def __init__(self, width: int, heads: int, dtype, *, rngs: nnx.Rngs):
    kinds = {'dtype': dtype, 'param_dtype': dtype}
    self.attention_norm = nnx.LayerNorm(width, **kinds, rngs=rngs)
    self.attention = nnx.MultiHeadAttention(
      heads, width, decode=False, keep_rngs=False, **kinds, rngs=rngs
    )
    self.mlp_norm = nnx.LayerNorm(width, **kinds, rngs=rngs)
    self.up = nnx.Linear(width, 4 * width, **kinds, rngs=rngs)
    self.down = nnx.Linear(4 * width, width, **kinds, rngs=rngs)

  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    x = x + self.attention(self.attention_norm(x), mask=mask)
    return x + self.down(nnx.gelu(self.up(self.mlp_norm(x))))


class ByteTransformer(nnx.Module):
  """Bytes [batch, length] (any integer type) -> next-byte logits [batch, length, 256], float32."""

  def __init__(
    self, *, context: int, width: int, layers: int, heads: int, dtype: str, rngs: nnx.Rngs
  ):
    kind = DTYPES[dtype]
    self.embed = nnx.Embed(VOCAB, width, dtype=kind, param_dtype=kind, rngs=rngs)
    init = nnx.initializers.normal(0.02)
    self.position = nnx.Param(init(rngs.params(), (context, width), kind))
    self.blocks = nnx.List([Block(width, heads, kind, rngs=rngs) for _ in range(layers)])
    self.norm = nnx.LayerNorm(width, dtype=kind, param_dtype=kind, rngs=rngs)

  def __call__(self, tokens: jax.Array) -> jax.Array:
    length = tokens.shape[-1]
    x = self.embed(tokens.astype(jnp.int32)) + self.position[...][:length]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.embed.attend(self.norm(x)).astype(jnp.float32)

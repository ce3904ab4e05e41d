"""Demo: the paper's step decay on real handwritten digits, in a few seconds.

Prints the stage table of the fixed-horizon schedule, then trains a softmax
regression on scikit-learn's bundled digits with ``step_decay_sgd`` and
reports the loss and test accuracy at the end of each stage.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import optax_stepdecay as osd

TOTAL_STEPS, BATCH, ETA0, ALPHA = 3000, 64, 0.5, 6.0


def load():
  digits = load_digits()
  x = (digits.data / 16.0).astype(np.float32)
  return train_test_split(x, digits.target, test_size=0.25, random_state=0)


def loss_fn(params, x, y):
  logits = x @ params['w'] + params['b']
  return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def main():
  x_train, x_test, y_train, y_test = load()
  schedule = osd.fixed_horizon_step_decay_schedule(ETA0, TOTAL_STEPS, ALPHA)
  print(f'{schedule!r}\n{schedule.stage_table()}\n')

  tx = osd.step_decay_sgd(ETA0, ALPHA, total_steps=TOTAL_STEPS, momentum=0.9, weight_decay=1e-4)
  params = {'w': jnp.zeros((64, 10)), 'b': jnp.zeros(10)}
  state = tx.init(params)

  @jax.jit
  def train_step(params, state, x, y):
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state, loss

  rng = np.random.default_rng(0)
  ends = set(schedule.change_points()) | {TOTAL_STEPS}
  for step in range(1, TOTAL_STEPS + 1):
    batch = rng.integers(0, len(x_train), BATCH)
    params, state, _ = train_step(params, state, x_train[batch], y_train[batch])
    if step in ends:
      lr = float(osd.current_learning_rate(state))
      train_loss = float(loss_fn(params, x_train, y_train))
      predictions = jnp.argmax(x_test @ params['w'] + params['b'], axis=-1)
      accuracy = float(jnp.mean(predictions == y_test))
      print(f'step {step:5d}  lr {lr:.5f}  train loss {train_loss:.4f}  test acc {accuracy:.3f}')


if __name__ == '__main__':
  main()

"""The test problems of the convergence benchmark, each with the rate the paper proves for it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from scipy import optimize
from sklearn import datasets
from sklearn.preprocessing import StandardScaler

# (w, x, y, xp) -> per-example losses, in jnp (float32) or np (float64) as xp says.
Loss = Callable[[Any, Any, Any, ModuleType], Any]
# (w, xp) -> the regulariser's value.
Regulariser = Callable[[Any, ModuleType], Any]
# T -> the paper's rate at T, up to a constant.
Rate = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Problem:
  """f(w) = mean_i loss(w, x_i, y_i) + regulariser(w), optionally on a ball of radius `radius`.

  Attributes:
    name: The problem's key in the results.
    paper_rate: The paper's rate for this class of problem, as text.
    rate: The paper's rate as a function of T.
    x: The design matrix, float64.
    y: The targets, float64.
    loss: The per-example loss.
    regulariser: The regulariser.
    f_star: The optimal value; None for a non-convex problem, measured by the gradient norm.
    radius: The radius of the ball SGD projects onto; None for no projection.
    batch_size: The minibatch size of SGD.
  """

  name: str
  paper_rate: str
  rate: Rate
  x: np.ndarray
  y: np.ndarray
  loss: Loss
  regulariser: Regulariser
  f_star: float | None = None
  radius: float | None = None
  batch_size: int = 8

  def objective(self, w: Any, xp: ModuleType = np) -> Any:
    """The full-batch objective f(w), computed with the array module xp."""
    return xp.mean(self.loss(w, self.x, self.y, xp)) + self.regulariser(w, xp)


def _design(x: np.ndarray) -> np.ndarray:
  return np.hstack([StandardScaler().fit_transform(x), np.ones((len(x), 1))])


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
  data = datasets.load_breast_cancer()
  return _design(data.data), 2.0 * data.target - 1.0  # labels +-1


def _diabetes() -> tuple[np.ndarray, np.ndarray]:
  data = datasets.load_diabetes()
  return _design(data.data), (data.target - data.target.mean()) / data.target.std()


def _logistic_loss(w: Any, x: Any, y: Any, xp: ModuleType) -> Any:
  return xp.logaddexp(0.0, -y * (x @ w))


def _squared_loss(w: Any, x: Any, y: Any, xp: ModuleType) -> Any:
  return 0.5 * (x @ w - y) ** 2


def _absolute_loss(w: Any, x: Any, y: Any, xp: ModuleType) -> Any:
  return xp.abs(x @ w - y)


def _hinge_loss(w: Any, x: Any, y: Any, xp: ModuleType) -> Any:
  return xp.maximum(0.0, 1.0 - y * (x @ w))


def _ridge(lam: float) -> Regulariser:
  return lambda w, xp: 0.5 * lam * xp.sum(w**2)


def _nonconvex_penalty(lam: float) -> Regulariser:
  """lam * sum w^2 / (1 + w^2): smooth, non-convex."""
  return lambda w, xp: lam * xp.sum(w**2 / (1 + w**2))


def _no_regulariser(w: Any, xp: ModuleType) -> float:
  return 0.0


def logistic_f_star(x: np.ndarray, y: np.ndarray, lam: float) -> float:
  """Newton's method in float64: f* to machine precision."""
  w = np.zeros(x.shape[1])
  for _ in range(50):
    p = 1 / (1 + np.exp(y * (x @ w)))  # sigma(-y w.x)
    grad = -(x.T @ (y * p)) / len(y) + lam * w
    hessian = (x.T * (p * (1 - p))) @ x / len(y) + lam * np.eye(x.shape[1])
    w -= np.linalg.solve(hessian, grad)
  return float(np.mean(np.logaddexp(0, -y * (x @ w))) + 0.5 * lam * w @ w)


def ridge_f_star(x: np.ndarray, y: np.ndarray, lam: float) -> float:
  """The closed form of ridge regression."""
  w = np.linalg.solve(x.T @ x / len(y) + lam * np.eye(x.shape[1]), x.T @ y / len(y))
  return float(np.mean(0.5 * (x @ w - y) ** 2) + 0.5 * lam * w @ w)


def lad_solution(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
  """Least absolute deviations as a linear program (HiGHS): exact f* and w*."""
  n, d = x.shape
  cost = np.concatenate([np.zeros(d), np.ones(n) / n])
  # x w - t <= y and -x w - t <= -y
  a_ub = np.block([[x, -np.eye(n)], [-x, -np.eye(n)]])
  b_ub = np.concatenate([y, -y])
  bounds = [(None, None)] * d + [(0, None)] * n
  result = optimize.linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method='highs')
  return float(result.fun), result.x[:d]


def hinge_f_star(x: np.ndarray, y: np.ndarray, lam: float) -> float:
  """The SVM dual (a box-constrained concave quadratic) by L-BFGS-B; checks the duality gap."""
  n = len(y)
  z = x * y[:, None]

  def negative_dual(alpha: np.ndarray) -> tuple[float, np.ndarray]:
    v = z.T @ alpha
    return -(alpha.sum() - v @ v / (2 * lam)), -(1 - z @ v / lam)

  result = optimize.minimize(
    negative_dual, np.full(n, 0.5 / n), jac=True, method='L-BFGS-B', bounds=[(0, 1 / n)] * n,
    options={'maxiter': 100_000, 'ftol': 1e-15, 'gtol': 1e-12},
  )  # fmt: skip
  w = z.T @ result.x / lam
  primal = float(np.mean(np.maximum(0, 1 - z @ w)) + 0.5 * lam * w @ w)
  gap = primal + result.fun
  if gap > 1e-7:
    raise RuntimeError(f'hinge f* not accurate: duality gap {gap:.2e}')
  return primal


def log_rate(power: float, log_power: float) -> Rate:
  """The rate ln(T)^log_power / T^power."""
  return lambda t: np.log(t) ** log_power / t**power


def all_problems() -> list[Problem]:
  """The five problems, one per class of the paper's theorems."""
  xb, yb = _breast_cancer()
  xd, yd = _diabetes()
  lam = 1e-2
  lad_star, w_lad = lad_solution(xd, yd)
  return [
    # smooth strongly convex: l2-logistic regression (breast cancer)
    Problem('logistic', 'O(ln T / T)', log_rate(1, 1), xb, yb, _logistic_loss, _ridge(lam),
            logistic_f_star(xb, yb, lam)),
    # smooth strongly convex: noisy least squares + 1e-2 ridge (diabetes)
    Problem('least_squares', 'O(ln T / T)', log_rate(1, 1), xd, yd, _squared_loss, _ridge(lam),
            ridge_f_star(xd, yd, lam)),
    # convex non-smooth: least absolute deviations on a ball (diabetes)
    Problem('lad', 'O(ln T / sqrt T)', log_rate(0.5, 1), xd, yd, _absolute_loss,
            _no_regulariser, lad_star, radius=2 * float(np.linalg.norm(w_lad))),
    # strongly convex non-smooth: l2-regularised hinge loss (breast cancer)
    Problem('hinge', 'O(ln^2 T / T)', log_rate(1, 2), xb, yb, _hinge_loss, _ridge(lam),
            hinge_f_star(xb, yb, lam)),
    # non-convex smooth: logistic loss + 0.1 sum w^2/(1+w^2) (breast cancer)
    Problem('nonconvex', 'O(ln T / sqrt T)', log_rate(0.5, 1), xb, yb, _logistic_loss,
            _nonconvex_penalty(0.1)),
  ]  # fmt: skip

"""The Paper-B network as an sklearn classifier, so that fairlearn's reductions can use it as a learner.

``NetworkClassifier.fit(X, y, sample_weight)`` runs T full-batch projected gradient steps on the weighted
logistic loss sum_i w_i log(1 + exp(-s_i f(x_i; W))) / sum_i w_i over {||W - W0||_F <= R}, step
R / sqrt(T) (the loss has gradient norm <= 1, layers.paperb), from the seeded W0 of
``layers.paperb.init_network``; ``predict`` returns 1[f > 0]. Rows of X are scaled to the unit sphere
(the network's input domain).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from layers import paperb as pb


class NetworkClassifier(ClassifierMixin, BaseEstimator):
    """Two-layer ReLU network (NTK scaling) of width ``m``, ball radius ``R``, ``steps`` projected steps."""

    def __init__(self, m: int = 256, R: float = 10.0, steps: int = 100, seed: int = 0):
        self.m, self.R, self.steps, self.seed = m, R, steps, seed

    @staticmethod
    def _inputs(X) -> torch.Tensor:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got {X.shape}")
        norm = np.linalg.norm(X, axis=1, keepdims=True)
        if np.any(norm == 0) or not np.all(np.isfinite(X)):
            raise ValueError("X has a zero or non-finite row: it cannot be scaled to the unit sphere")
        return torch.as_tensor(X / norm)[None]

    def fit(self, X, y, sample_weight=None):
        Xt = self._inputs(X)
        y = np.asarray(y)
        if y.shape != (Xt.shape[1],) or not np.all((y == 0) | (y == 1)):
            raise ValueError(f"y must be 0/1 labels of shape ({Xt.shape[1]},)")
        w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w.shape != y.shape or np.any(w < 0) or not np.isfinite(w).all():
            raise ValueError("sample_weight must be finite, non-negative, one weight per sample")
        self.classes_ = np.array([0, 1])
        self.W0_, self.b_ = pb.init_network(self.m, Xt.shape[2], (self.seed,))
        self.W_ = self.W0_.clone()
        if w.sum() == 0:
            return self
        w = torch.as_tensor(w / w.sum())[None]
        s = torch.as_tensor(2.0 * y - 1.0)[None]
        eta = self.R / math.sqrt(self.steps)
        for _ in range(self.steps):
            f, mask = pb.forward(self.W_, self.b_, Xt)
            _, dl = pb.logistic(f, s)
            self.W_ = pb.project_ball(self.W_ - eta * pb.grad_f(self.b_, Xt, mask, w * dl), self.W0_, self.R)
        return self

    def decision_function(self, X) -> np.ndarray:
        return pb.forward(self.W_, self.b_, self._inputs(X))[0][0].numpy()

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > 0).astype(np.int64)

"""Adaptive action ensembling (CogACT), as upstream's SimplerEnv clients use it.

A new chunk [T, D] arrives every control step. The chunk predicted k steps ago holds its guess for
NOW at index k. Those guesses (newest first has index 0) are averaged with weights
    w_k = exp(alpha * cos(pred_k, pred_newest)) / sum_j exp(alpha * cos(pred_j, pred_newest)),
so older guesses that agree with the newest count more. alpha = 0 is the plain mean; a horizon of
1 disables ensembling (the newest chunk's first action). Upstream: alpha 0.1, horizon 7 (WidowX)
or 2 (Google Robot).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np


class AdaptiveEnsembler:
    def __init__(self, horizon: int, alpha: float = 0.0):
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ValueError(
                f"ensemble horizon must be an integer >= 1 (1 disables ensembling), got {horizon!r}"
            )
        if not math.isfinite(float(alpha)):
            raise ValueError(f"ensemble alpha must be finite, got {alpha!r}")
        self.horizon = int(horizon)
        self.alpha = float(alpha)
        self.history: deque[np.ndarray] = deque(maxlen=self.horizon)  # oldest first, each [T, D]
        self.last_weights: np.ndarray | None = None  # [K] weights of the last call, oldest first
        self.last_predictions: np.ndarray | None = None  # [K, D] the aligned guesses they weighed

    @property
    def enabled(self) -> bool:
        return self.horizon > 1

    def reset(self) -> None:
        self.history.clear()
        self.last_weights = self.last_predictions = None

    def ensemble_action(self, chunk: np.ndarray) -> np.ndarray:
        """Add this step's chunk [T, D] and return the action for now [D].

        A single action [D] per step is also accepted (as upstream): each one is then a guess for
        now, so the result is a weighted average of the last `horizon` actions.
        """
        chunk = np.array(chunk, dtype=np.float64)  # a copy: later edits by the caller cannot leak in
        if chunk.ndim not in (1, 2) or chunk.size == 0:
            raise ValueError(
                f"action chunk must be a non-empty [T, D] (or [D]) array, got shape {chunk.shape}"
            )
        if not np.isfinite(chunk).all():
            raise ValueError("action chunk contains NaN or inf; the policy output is broken")
        if self.history and self.history[-1].shape[-1] != chunk.shape[-1]:
            raise ValueError(
                f"action dim changed from {self.history[-1].shape[-1]} to {chunk.shape[-1]}; call reset() first"
            )
        if self.history and self.history[-1].ndim != chunk.ndim:
            raise ValueError("mixing single actions [D] and chunks [T, D] in one history; call reset() first")
        self.history.append(chunk)
        preds = self._aligned()  # [K, D], oldest first, newest last
        ref = preds[-1]
        # Upstream's cosine similarity, with its 1e-7 so a zero action gets similarity 0, not NaN.
        cos = preds @ ref / (np.linalg.norm(preds, axis=1) * np.linalg.norm(ref) + 1e-7)  # [K]
        logits = self.alpha * cos
        weights = np.exp(logits - logits.max())  # shifted for overflow safety; same ratios
        weights /= weights.sum()
        self.last_weights, self.last_predictions = weights, preds
        return weights @ preds  # [D]

    def _aligned(self) -> np.ndarray:
        """Each kept chunk's prediction for now: the chunk from k steps ago at index k.

        A chunk shorter than its age has no prediction for now and is left out.
        """
        n = len(self.history)
        if self.history[-1].ndim == 1:
            return np.stack(self.history)  # [K, D]: single actions all predict now
        preds = [c[n - 1 - i] for i, c in enumerate(self.history) if n - 1 - i < c.shape[0]]
        return np.stack(preds)  # [K, D]

"""Scalar heads that turn a transformer's final hidden state into numbers RL needs.

* :class:`ValueHead` -- the PPO critic: one value per token, V(s_t) = h_t · w + b.
* :class:`ScoreHead` -- a reward model: one score per sequence, r = h_last · w + b, read at the
  last real token of each row (the last position whose attention mask is 1).

A head reads ``model.hidden`` (B, T, C) after ``model.forward``; its ``backward`` returns dL/dhidden,
which goes into ``model.backward(dhidden=...)`` so the gradient flows on into the trunk.  A head can
sit on the policy's own trunk (shared) or on a separate copy of the model.
"""
import numpy as np

from minippo.checks import finite_number, integer_at_least
from minippo.nn.layers import linear_backward, linear_forward
from minippo.nn.module import Module, as_generator, check_array, check_dtype


class ValueHead(Module):
    """v_t = h_t · w + b for every position: hidden (B, T, C) -> values (B, T).

    ``init_std=0`` (the default) starts at v ≡ 0; a positive std draws w ~ N(0, init_std²).
    Parameters are named ``weight`` (C, 1) and ``bias`` (1,).
    """

    def __init__(self, n_embd, dtype=np.float32, init_std=0.0, seed=None):
        dtype = check_dtype(dtype)
        n_embd = integer_at_least(n_embd, "n_embd", 1)
        init_std = finite_number(init_std, "init_std")  # a Python float: w stays in dtype
        if init_std < 0:
            raise ValueError(f"init_std must be a finite number >= 0, got {init_std}")
        weight = as_generator(seed).standard_normal((n_embd, 1), dtype=dtype)
        weight *= init_std
        super().__init__({"weight": weight, "bias": np.zeros(1, dtype=dtype)})
        self._hidden = None

    def forward(self, hidden):
        hidden = self._check_hidden(hidden)
        self._hidden = hidden
        B, T, C = hidden.shape
        out = linear_forward(hidden.reshape(B * T, C), self.params["weight"], self.params["bias"])
        return out.reshape(B, T)  # (B*T, 1) -> (B, T)

    def _check_hidden(self, hidden):
        hidden = np.asarray(hidden)
        C = self.params["weight"].shape[0]
        if hidden.ndim != 3 or hidden.shape[-1] != C:
            raise ValueError(f"hidden must have shape (B, T, {C}), got {hidden.shape}")
        return check_array(hidden, hidden.shape, self.params["weight"].dtype, "hidden")

    def backward(self, dvalues):
        """dvalues (B, T) -> dL/dhidden (B, T, C); adds dw, db into ``self.grads``."""
        if self._hidden is None:
            raise RuntimeError("backward called before forward")
        B, T, C = self._hidden.shape
        dvalues = check_array(dvalues, (B, T), self.params["weight"].dtype, "dvalues")
        dhidden = linear_backward(dvalues.reshape(B * T, 1), self._hidden.reshape(B * T, C),
                                  self.params["weight"], self.grads["weight"], self.grads["bias"])
        return dhidden.reshape(B, T, C)


def last_token_index(attention_mask, B, T):
    """Index of the last real token of each row (B,); T − 1 for every row when there is no mask."""
    if attention_mask is None:
        return np.full(B, T - 1)
    mask = np.asarray(attention_mask)
    if mask.shape != (B, T):
        raise ValueError(f"attention_mask must have shape {(B, T)}, got {mask.shape}")
    if not mask.any(axis=1).all():
        raise ValueError("every row of attention_mask needs at least one real token (a 1)")
    return T - 1 - np.argmax(mask[:, ::-1] != 0, axis=1)


class ScoreHead(ValueHead):
    """r = h_last · w + b: one score per sequence, hidden (B, T, C) -> scores (B,)."""

    def forward(self, hidden, attention_mask=None):
        hidden = self._check_hidden(hidden)
        last = last_token_index(attention_mask, *hidden.shape[:2])  # checked before any state changes
        values = super().forward(hidden)  # (B, T)
        self._last = last
        return values[np.arange(len(last)), last]

    def backward(self, dscores):
        """dscores (B,) -> dL/dhidden (B, T, C), nonzero only at each row's last real token."""
        if self._hidden is None:
            raise RuntimeError("backward called before forward")
        B, T, _ = self._hidden.shape
        dtype = self.params["weight"].dtype
        dvalues = np.zeros((B, T), dtype=dtype)
        dvalues[np.arange(B), self._last] = check_array(dscores, (B,), dtype, "dscores")
        return super().backward(dvalues)

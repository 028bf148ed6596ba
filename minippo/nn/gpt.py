"""A GPT-2 transformer in NumPy with a hand-written backward pass and KV-cache generation.

Architecture (exactly GPT-2's), for token ids x_1..x_T:

    h⁰_t = E[x_t] + P[pos_t]                                    token + position embeddings
    a    = h + Attn(LN₁(h))                                     pre-LayerNorm block, causal attention
    h'   = a + MLP(LN₂(a)),   MLP(u) = GELU(u W_fc + b_fc) W_proj + b_proj
    z_t  = LN_f(hᴸ_t) Eᵀ                                         LM head tied to the token embedding

Parameters live in one flat dict named exactly like a Hugging Face GPT-2 checkpoint
(``transformer.h.0.attn.c_attn.weight`` is (C, 3C): ``x @ w + b``), so real GPT-2 weights converted
to NumPy load as they are.

``forward`` keeps what ``backward`` needs; ``backward`` is the forward read in reverse and adds into
``self.grads``.  The final hidden state (after LN_f) is kept in ``self.hidden`` so that value and
score heads (``minippo.nn.heads``) can read it and send their gradient back through ``backward``.

Left padding follows Hugging Face: pad keys are masked and the position of a token counts only the
real tokens before it (``pos = cumsum(mask) − 1``, clipped at 0), so a padded row gives the same
logits on its real tokens as the row alone.
"""
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from minippo.nn.attention import attention_backward, attention_bias, attention_decode, attention_forward
from minippo.nn.layers import (
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    layernorm_normalize,
    linear_backward,
    linear_forward,
    row_sums,
)
from minippo.checks import integer_at_least, is_integer, is_real
from minippo.nn.module import Module, as_generator, check_array, check_dtype
from minippo.parallel import map_array_groups, map_shards, row_shards

# Buffers some GPT-2 checkpoints carry (the causal mask); they hold no learned values.
CHECKPOINT_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of a GPT.  ``dtype`` (float32 or float64) is the dtype of every array the model makes."""

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dtype: object = np.float32

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            object.__setattr__(self, name, integer_at_least(getattr(self, name), f"GPTConfig.{name}", 1))
        if self.n_embd % self.n_head:
            raise ValueError(
                f"GPTConfig.n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        object.__setattr__(self, "dtype", check_dtype(self.dtype))

    @property
    def head_size(self):
        return self.n_embd // self.n_head

    def to_dict(self):
        """JSON-friendly form (dtype as its name)."""
        return {**asdict(self), "dtype": self.dtype.name}

    @classmethod
    def from_dict(cls, values):
        """The inverse of :meth:`to_dict`; a missing or unknown field is a ValueError naming it."""
        if not isinstance(values, Mapping):
            raise TypeError(f"values must be a mapping of GPTConfig fields, got {type(values).__name__}")
        names = {field.name for field in fields(cls)}
        missing, unknown = names - {"dtype"} - values.keys(), values.keys() - names
        if missing or unknown:
            raise ValueError(f"GPTConfig fields missing: {sorted(missing)}; unknown: {sorted(unknown)}")
        return cls(**values)


class Generation(NamedTuple):
    """Output of :meth:`GPT.generate`.

    tokens:   (B, T + max_new_tokens) prompt followed by the sampled tokens (pad after a row's EOS);
    logprobs: (B, max_new_tokens) log π(token) under the temperature-scaled distribution, 0 where masked;
    mask:     (B, max_new_tokens) True for sampled tokens up to and including a row's EOS.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    mask: np.ndarray


def parameter_shapes(config):
    """Name -> shape of every parameter, in Hugging Face GPT-2 naming."""
    C = config.n_embd
    shapes = {
        "transformer.wte.weight": (config.vocab_size, C),
        "transformer.wpe.weight": (config.block_size, C),
    }
    for layer in range(config.n_layer):
        prefix = f"transformer.h.{layer}."
        shapes.update({
            prefix + "ln_1.weight": (C,), prefix + "ln_1.bias": (C,),
            prefix + "attn.c_attn.weight": (C, 3 * C), prefix + "attn.c_attn.bias": (3 * C,),
            prefix + "attn.c_proj.weight": (C, C), prefix + "attn.c_proj.bias": (C,),
            prefix + "ln_2.weight": (C,), prefix + "ln_2.bias": (C,),
            prefix + "mlp.c_fc.weight": (C, 4 * C), prefix + "mlp.c_fc.bias": (4 * C,),
            prefix + "mlp.c_proj.weight": (4 * C, C), prefix + "mlp.c_proj.bias": (C,),
        })
    shapes["transformer.ln_f.weight"] = (C,)
    shapes["transformer.ln_f.bias"] = (C,)
    return shapes


def init_parameters(config, rng):
    """GPT-2 initialisation: N(0, 0.02) for weights and embeddings, N(0, 0.02/√(2·n_layer)) for the
    two residual projections of each block, zeros for biases, ones for LayerNorm gains."""
    residual_std = 0.02 / math.sqrt(2 * config.n_layer)
    params = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
            params[name] = np.ones(shape, dtype=config.dtype)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype=config.dtype)
        else:
            std = residual_std if name.endswith("c_proj.weight") else 0.02
            params[name] = rng.standard_normal(shape, dtype=config.dtype) * std
    return params


class GPT(Module):
    """GPT-2 with manual backward.  ``GPT(config, seed=0)``; see the module docstring for the math."""

    def __init__(self, config, seed=None):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        super().__init__(init_parameters(config, as_generator(seed)))
        self.hidden = None
        self._cache = None
        self._shard_grads = []  # gradient buffers of shards 1, 2, ... (see backward)

    def load_state_dict(self, state_dict):
        """Load parameters named as in a Hugging Face GPT-2 checkpoint.

        Also accepted: an ``lm_head.weight`` equal to the token embedding (the head is tied), and the
        causal-mask buffers (``*.attn.bias``, ``*.attn.masked_bias``) some checkpoints carry.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict of arrays, got {type(state_dict).__name__}")
        state_dict = {name: value for name, value in state_dict.items()
                      if not name.endswith(CHECKPOINT_BUFFER_SUFFIXES)}
        problems = []
        if "lm_head.weight" in state_dict:
            lm_head = state_dict.pop("lm_head.weight")
            wte = state_dict.get("transformer.wte.weight")
            if wte is None or np.shape(lm_head) != np.shape(wte) or not np.array_equal(lm_head, wte):
                problems.append("lm_head.weight must equal transformer.wte.weight (the LM head is tied "
                                "to the token embedding)")
        super().load_state_dict(state_dict, problems)

    # ------------------------------------------------------------------------------------------
    # input checks
    # ------------------------------------------------------------------------------------------
    def _check_idx(self, idx, max_length):
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"idx must be an integer array of token ids, got dtype {idx.dtype}")
        if idx.ndim != 2 or 0 in idx.shape:
            raise ValueError(f"idx must have shape (B, T) with B >= 1 and T >= 1, got {idx.shape}")
        if idx.shape[1] > max_length:
            raise ValueError(
                f"sequence length {idx.shape[1]} exceeds what fits in block_size {self.config.block_size}"
                + ("" if max_length == self.config.block_size else " together with max_new_tokens")
            )
        bad = (idx < 0) | (idx >= self.config.vocab_size)
        if bad.any():
            raise ValueError(
                f"idx must hold token ids in [0, {self.config.vocab_size}); found {idx[bad][0]}"
            )
        return idx

    @staticmethod
    def _check_mask(attention_mask, shape):
        if attention_mask is None:
            return None
        mask = np.asarray(attention_mask)
        if mask.shape != shape:
            raise ValueError(f"attention_mask must have the shape of idx {shape}, got {mask.shape}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("attention_mask must contain only 0 (pad) and 1 (real token)")
        return mask.astype(np.int64)

    def _positions_and_bias(self, mask, B, T):
        """What a (left-padded) batch of B sequences of length T needs besides its tokens.

        Position ids (B, T): 0..T−1, or with padding cumsum(mask) − 1 clipped at 0; and the additive
        attention bias, causal plus padding: (T, T) without a mask, else (B, 1, T, T).
        """
        if mask is None:
            positions = np.broadcast_to(np.arange(T), (B, T))
        else:
            positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
        return positions, attention_bias(np.arange(T), T, mask, self.config.dtype)

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def _split_heads(self, qkv, B, T):
        """(B*T, 3C) -> three views (B, nh, T, hs) for queries, keys and values."""
        nh, hs = self.config.n_head, self.config.head_size
        q, k, v = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # -> (3, B, nh, T, hs)
        return q, k, v

    def _block_forward(self, layer, x, B, T, bias, kv_cache=None, start=0):
        """One transformer block on x (B*T, C); returns the output and what backward needs.

        With ``kv_cache = (keys, values)`` of shape (B, nh, T_max, hs), the new keys and values are
        written at positions start..start+T−1 and attention runs over all cached positions.
        """
        p = self.params
        prefix = f"transformer.h.{layer}."
        ln1, norm1, rstd1 = layernorm_forward(x, p[prefix + "ln_1.weight"], p[prefix + "ln_1.bias"])
        qkv = linear_forward(ln1, p[prefix + "attn.c_attn.weight"], p[prefix + "attn.c_attn.bias"])
        q, k, v = self._split_heads(qkv, B, T)
        if kv_cache is not None:
            keys, values = kv_cache
            keys[:, :, start:start + T] = k
            values[:, :, start:start + T] = v
            k, v = keys[:, :, :start + T], values[:, :, :start + T]
        y = np.empty((B, T, self.config.n_head, self.config.head_size), dtype=x.dtype)
        _, att = attention_forward(q, k, v, bias, out=y.transpose(0, 2, 1, 3), causal=True)  # heads merged in place
        y = y.reshape(B * T, -1)  # (B, T, nh, hs) -> (B*T, C)
        attn_out = linear_forward(y, p[prefix + "attn.c_proj.weight"], p[prefix + "attn.c_proj.bias"])
        attn_out += x  # residual: a = x + Attn(LN₁(x))
        ln2, norm2, rstd2 = layernorm_forward(attn_out, p[prefix + "ln_2.weight"], p[prefix + "ln_2.bias"])
        fc = linear_forward(ln2, p[prefix + "mlp.c_fc.weight"], p[prefix + "mlp.c_fc.bias"])  # (B*T, 4C)
        gelu, gate = gelu_forward(fc)
        out = linear_forward(gelu, p[prefix + "mlp.c_proj.weight"], p[prefix + "mlp.c_proj.bias"])
        out += attn_out  # residual: h' = a + MLP(LN₂(a))
        cache = (ln1, norm1, rstd1, q, k, v, att, y, ln2, norm2, rstd2, fc, gelu, gate)
        return out, cache

    def _embed(self, idx, positions):
        """h⁰ = E[x] + P[pos]: token plus position embeddings -> idx.shape + (C,)."""
        x = embedding_forward(idx, self.params["transformer.wte.weight"])
        x += embedding_forward(positions, self.params["transformer.wpe.weight"])
        return x

    def _trunk(self, idx, positions, bias, kv_caches=None, start=0):
        """Embeddings, every block and the final LayerNorm -> (hidden (B*T, C), caches)."""
        B, T = idx.shape
        x = self._embed(idx, positions).reshape(B * T, -1)
        block_caches = []
        for layer in range(self.config.n_layer):
            kv_cache = None if kv_caches is None else kv_caches[layer]
            x, cache = self._block_forward(layer, x, B, T, bias, kv_cache, start)
            block_caches.append(cache)
        hidden, norm_f, rstd_f = layernorm_forward(
            x, self.params["transformer.ln_f.weight"], self.params["transformer.ln_f.bias"]
        )
        return hidden, (block_caches, norm_f, rstd_f)

    def forward(self, idx, attention_mask=None, compute_logits=True):
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); keeps what ``backward`` needs.

        ``attention_mask`` (B, T) of 0/1 marks left padding.  The final hidden state is kept in
        ``self.hidden`` (B, T, C).  With ``compute_logits=False`` the LM head is skipped (for a critic
        or reward model that reads only the hidden state) and None is returned.
        The rows are split into shards that run in parallel threads (``minippo.parallel``).
        """
        idx = self._check_idx(idx, self.config.block_size)
        B, T = idx.shape
        C, V = self.config.n_embd, self.config.vocab_size
        mask = self._check_mask(attention_mask, idx.shape)
        positions, bias = self._positions_and_bias(mask, B, T)
        wte = self.params["transformer.wte.weight"]
        hidden = np.empty((B, T, C), dtype=self.config.dtype)
        logits = np.empty((B, T, V), dtype=self.config.dtype) if compute_logits else None

        def forward_shard(_, rows):
            shard_hidden, shard_cache = self._trunk(idx[rows], positions[rows],
                                                    bias if mask is None else bias[rows])
            hidden[rows] = shard_hidden.reshape(-1, T, C)
            if compute_logits:  # (rows*T, C) @ (C, V) -> (rows*T, V)
                np.matmul(shard_hidden, wte.T, out=logits[rows].reshape(-1, V))
            return shard_cache

        shards = row_shards(B)
        self._cache = dict(idx=idx, positions=positions, hidden=hidden, shards=shards,
                           shard_caches=map_shards(forward_shard, shards), has_logits=compute_logits)
        self.hidden = hidden
        return logits

    # ------------------------------------------------------------------------------------------
    # backward
    # ------------------------------------------------------------------------------------------
    def _block_backward(self, layer, dout, cache, B, T, g):
        """Gradient through one block: dout (B*T, C) w.r.t. its output -> gradient w.r.t. its input x.

        Parameter gradients are added into the dict ``g``."""
        ln1, norm1, rstd1, q, k, v, att, y, ln2, norm2, rstd2, fc, gelu, gate = cache
        p = self.params
        prefix = f"transformer.h.{layer}."
        nh, hs = self.config.n_head, self.config.head_size
        # MLP branch: h' = a + MLP(LN₂(a))
        dgelu = linear_backward(dout, gelu, p[prefix + "mlp.c_proj.weight"],
                                g[prefix + "mlp.c_proj.weight"], g[prefix + "mlp.c_proj.bias"])
        dfc = gelu_backward(dgelu, fc, gelu, gate)
        dln2 = linear_backward(dfc, ln2, p[prefix + "mlp.c_fc.weight"],
                               g[prefix + "mlp.c_fc.weight"], g[prefix + "mlp.c_fc.bias"])
        dattn_out = layernorm_backward(dln2, norm2, rstd2, p[prefix + "ln_2.weight"],
                                       g[prefix + "ln_2.weight"], g[prefix + "ln_2.bias"])
        dattn_out += dout  # the residual path
        # attention branch: a = x + Attn(LN₁(x))
        dy = linear_backward(dattn_out, y, p[prefix + "attn.c_proj.weight"],
                             g[prefix + "attn.c_proj.weight"], g[prefix + "attn.c_proj.bias"])
        dy = dy.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B*T, C) -> (B, nh, T, hs)
        y_heads = y.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # the attention output, (B, nh, T, hs)
        dqkv = np.empty((B, T, 3, nh, hs), dtype=dout.dtype)
        attention_backward(dy, q, k, v, y_heads, att, out=tuple(dqkv.transpose(2, 0, 3, 1, 4)))  # 3 × (B, nh, T, hs)
        dqkv = dqkv.reshape(B * T, -1)  # -> (B*T, 3C)
        dln1 = linear_backward(dqkv, ln1, p[prefix + "attn.c_attn.weight"],
                               g[prefix + "attn.c_attn.weight"], g[prefix + "attn.c_attn.bias"])
        dx = layernorm_backward(dln1, norm1, rstd1, p[prefix + "ln_1.weight"],
                                g[prefix + "ln_1.weight"], g[prefix + "ln_1.bias"])
        dx += dattn_out  # the residual path
        return dx

    def backward(self, dlogits=None, dhidden=None):
        """Add the gradients of the last forward's loss into ``self.grads`` and return it.

        dlogits: (B, T, vocab) gradient w.r.t. the logits (None if the loss does not use them);
        dhidden: (B, T, C) gradient w.r.t. ``self.hidden`` from heads reading it (None if none).
        The tied token embedding receives both its LM-head and its embedding contributions.
        The shards of rows run in parallel threads (``minippo.parallel.map_shards``); shard 0 adds into
        ``self.grads``, the others into buffers of their own that are added to ``self.grads`` at the end,
        in shard order.
        """
        if self._cache is None:
            raise RuntimeError("backward called before forward: run model.forward(idx) first")
        cache = self._cache
        B, T = cache["idx"].shape
        C, V = self.config.n_embd, self.config.vocab_size
        if dlogits is None and dhidden is None:
            raise ValueError("backward needs dlogits, dhidden or both")
        if dlogits is not None:
            if not cache["has_logits"]:
                raise ValueError("dlogits given, but forward ran with compute_logits=False")
            dlogits = check_array(dlogits, (B, T, V), self.config.dtype, "dlogits")
        if dhidden is not None:
            dhidden = check_array(dhidden, (B, T, C), self.config.dtype, "dhidden")
        shards = cache["shards"]
        while len(self._shard_grads) < len(shards) - 1:
            self._shard_grads.append({name: np.zeros_like(value) for name, value in self.grads.items()})

        def backward_shard(index, rows):
            grads = self.grads if index == 0 else self._shard_grads[index - 1]
            if index > 0:
                for gradient in grads.values():
                    gradient.fill(0.0)
            self._backward_rows(rows, cache["shard_caches"][index], cache, dlogits, dhidden, grads)

        map_shards(backward_shard, shards)
        other_shards = self._shard_grads[:len(shards) - 1]

        def add_other_shards(names):
            for name in names:
                for shard_grads in other_shards:
                    self.grads[name] += shard_grads[name]

        if other_shards:
            map_array_groups(add_other_shards, self.grads)
        return self.grads

    def _backward_rows(self, rows, shard_cache, cache, dlogits, dhidden, grads):
        """Backward over the batch rows ``rows`` (one shard) of the last forward, adding into ``grads``."""
        idx, positions = cache["idx"][rows], cache["positions"][rows]
        block_caches, norm_f, rstd_f = shard_cache
        n, T = idx.shape
        C, V = self.config.n_embd, self.config.vocab_size
        p = self.params
        dhid = np.zeros((n * T, C), dtype=self.config.dtype)
        if dlogits is not None:
            shard_dlogits = dlogits[rows].reshape(n * T, V)
            grads["transformer.wte.weight"] += shard_dlogits.T @ cache["hidden"][rows].reshape(n * T, C)  # (V, n*T) @ (n*T, C)
            dhid += shard_dlogits @ p["transformer.wte.weight"]  # (n*T, V) @ (V, C)
        if dhidden is not None:
            dhid += dhidden[rows].reshape(n * T, C)
        dx = layernorm_backward(dhid, norm_f, rstd_f, p["transformer.ln_f.weight"],
                                grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"])
        for layer in reversed(range(self.config.n_layer)):
            dx = self._block_backward(layer, dx, block_caches[layer], n, T, grads)
        embedding_backward(dx, idx, grads["transformer.wte.weight"])
        embedding_backward(dx, positions, grads["transformer.wpe.weight"])

    # ------------------------------------------------------------------------------------------
    # generation with a KV cache
    # ------------------------------------------------------------------------------------------
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_token_id=None, attention_mask=None, rng=None, pad_token_id=None):
        """Sample ``max_new_tokens`` tokens after the (left-padded) prompts ``idx`` (B, T).

        Each new token costs one position of attention: keys and values of earlier positions are kept
        in a cache (B, nh, T + max_new_tokens, hs) per layer.  Sampling uses π_T = softmax(z / T);
        ``temperature=0`` is greedy (logprobs then under T = 1).  ``top_k`` keeps the k most likely
        tokens and ``top_p`` the smallest set with probability ≥ p; the returned logprobs are under the
        full temperature-scaled distribution, so they equal a forward pass over the finished sequence.
        After a row samples ``eos_token_id`` it is filled with ``pad_token_id`` (default: the EOS id).
        ``rng``: a Generator or a seed.  Returns a :class:`Generation`.
        """
        config = self.config
        if not is_integer(max_new_tokens) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        idx = self._check_idx(idx, config.block_size - max_new_tokens)
        B, T0 = idx.shape
        mask = self._check_mask(attention_mask, idx.shape)
        if mask is None:
            mask = np.ones((B, T0), dtype=np.int64)
        elif not mask[:, -1].all():
            raise ValueError("attention_mask must be left-padded: the last prompt position of every "
                             "row must be a real token (mask 1)")
        sampler = TokenSampler(temperature, top_k, top_p, config.vocab_size, as_generator(rng))
        for name, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
            if value is not None and not (is_integer(value) and 0 <= value < config.vocab_size):
                raise ValueError(f"{name} must be None or an integer in [0, {config.vocab_size}), got {value!r}")
        if pad_token_id is None:
            pad_token_id = 0 if eos_token_id is None else eos_token_id

        total = T0 + max_new_tokens
        kv_shape = (B, config.n_head, total, config.head_size)
        kv_caches = [(np.empty(kv_shape, config.dtype), np.empty(kv_shape, config.dtype))
                     for _ in range(config.n_layer)]
        key_mask = np.ones((B, total), dtype=np.int64)
        key_mask[:, :T0] = mask
        prompt_unpadded = bool(mask.all())
        tokens = np.full((B, total), pad_token_id, dtype=np.int64)
        tokens[:, :T0] = idx
        logprobs = np.zeros((B, max_new_tokens), dtype=config.dtype)
        sampled_mask = np.zeros((B, max_new_tokens), dtype=bool)
        finished = np.zeros(B, dtype=bool)

        # prefill: the whole prompt at once; only the last position goes through the LM head
        positions, bias = self._positions_and_bias(None if prompt_unpadded else mask, B, T0)
        hidden, _ = self._trunk(idx, positions, bias, kv_caches, start=0)
        next_position = positions[:, -1] + 1  # (B,)
        decode_blocks = self._decode_weights()
        for step in range(max_new_tokens):
            last_hidden = hidden.reshape(B, -1, config.n_embd)[:, -1]  # (B, C)
            # (V, C) @ (C, B) -> (V, B): with few rows, BLAS is about 2x faster with the big matrix on
            # the left than with xᵀ-times-transposed-embedding; then one copy to (B, V) rows, because
            # the sampler's row-wise passes over a transposed view cost more than the copy
            logits = np.ascontiguousarray((self.params["transformer.wte.weight"] @ last_hidden.T).T)
            token, logprob = sampler.sample(logits)
            sampled_mask[:, step] = ~finished
            tokens[:, T0 + step] = np.where(finished, pad_token_id, token)
            logprobs[:, step] = np.where(finished, 0.0, logprob)
            if eos_token_id is not None:
                finished |= token == eos_token_id
            if step == max_new_tokens - 1 or finished.all():
                break
            # decode: one new query attends to every cached key
            start = T0 + step
            # the newest query may see every cached key, so only padding needs a mask
            bias = None if prompt_unpadded else attention_bias(np.array([start]), start + 1,
                                                               key_mask[:, :start + 1], config.dtype)
            hidden = self._decode_step(tokens[:, start], next_position, bias, kv_caches, start,
                                       decode_blocks)
            next_position = next_position + 1
        return Generation(tokens, logprobs, sampled_mask)

    def _decode_weights(self):
        """Each block's linear layers as (weight, bias) pairs for decoding, LayerNorm gains folded in.

        LN₁ feeds only c_attn and LN₂ only c_fc, and for a LayerNorm with gain γ and bias β

            LN(x) W + b = (x̂ ⊙ γ + β) W + b = x̂ (γ ⊙ W) + (β W + b),   x̂ = (x − μ)/σ,

        where γ ⊙ W scales row i of W by γ_i.  So a decode step only normalises x: two passes over its
        rows fewer per LayerNorm, every step, for one pass over these weights per ``generate`` call.
        Returns per block: (c_attn, c_proj, c_fc, mlp c_proj), each a (weight, bias) pair.
        """
        p = self.params

        def folded(prefix, norm, linear):
            gain, shift = p[prefix + norm + ".weight"], p[prefix + norm + ".bias"]
            weight, bias = p[prefix + linear + ".weight"], p[prefix + linear + ".bias"]
            return gain[:, None] * weight, shift @ weight + bias  # (C, out), (out,)

        blocks = []
        for layer in range(self.config.n_layer):
            prefix = f"transformer.h.{layer}."
            blocks.append((folded(prefix, "ln_1", "attn.c_attn"),
                           (p[prefix + "attn.c_proj.weight"], p[prefix + "attn.c_proj.bias"]),
                           folded(prefix, "ln_2", "mlp.c_fc"),
                           (p[prefix + "mlp.c_proj.weight"], p[prefix + "mlp.c_proj.bias"])))
        return blocks

    def _decode_step(self, token, position, bias, kv_caches, start, blocks):
        """The final hidden state (B, C) of one new token per row, at cache position ``start``.

        The blocks of ``_trunk`` specialised to one position: rows are (B, C), the heads need no
        transpose ((B, 3C) -> (B, 3, nh, hs) is a view), attention is :func:`attention_decode`, the
        LayerNorm gains sit in the weights ``blocks`` (from :meth:`_decode_weights`), and nothing is
        kept for backward.  The new keys and values are written into ``kv_caches``.
        """
        p = self.params
        B, nh, hs = len(token), self.config.n_head, self.config.head_size
        x = self._embed(token, position)  # (B, C)
        for (c_attn, c_proj, c_fc, mlp_proj), (keys, values) in zip(blocks, kv_caches):
            qkv = linear_forward(layernorm_normalize(x)[0], *c_attn)  # LN₁(x) W_attn + b_attn: (B, 3C)
            qkv = qkv.reshape(B, 3, nh, hs)  # queries, keys, values: (B, nh, hs) each
            keys[:, :, start] = qkv[:, 1]
            values[:, :, start] = qkv[:, 2]
            y = attention_decode(qkv[:, 0], keys[:, :, :start + 1], values[:, :, :start + 1], bias)
            attn_out = linear_forward(y.reshape(B, -1), *c_proj)  # (B, nh, hs) -> (B, C) is a view
            attn_out += x  # a = x + Attn(LN₁(x))
            fc = linear_forward(layernorm_normalize(attn_out)[0], *c_fc)  # (B, 4C)
            x = linear_forward(gelu_forward(fc)[0], *mlp_proj)
            x += attn_out  # h' = a + MLP(LN₂(a))
        hidden, _, _ = layernorm_forward(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
        return hidden

    # ------------------------------------------------------------------------------------------
    # Hugging Face GPT-2 directories (minippo.hf)
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path, dtype=np.float32, mmap_file=True):
        """A GPT from a Hugging Face GPT-2 model directory; see :func:`minippo.hf.gpt2.load_gpt2`."""
        from minippo.hf.gpt2 import load_gpt2

        return load_gpt2(path, dtype, mmap_file)

    def save_pretrained(self, path, tokenizer=None):
        """Write a directory ``transformers.GPT2LMHeadModel.from_pretrained`` reads; see
        :func:`minippo.hf.gpt2.save_gpt2`."""
        from minippo.hf.gpt2 import save_gpt2

        save_gpt2(self, path, tokenizer)


MIN_TEMPERATURE = 1.0 / float(np.finfo(np.float32).max)  # below it, z/T overflows to ±inf (and 0·inf = NaN)


class TokenSampler:
    """Draws the next token from logits z (B, V): softmax(z/T), optionally truncated by top-k / top-p.

    Returns the token and its log-probability under the untruncated softmax(z/T) (T = 1 for greedy).
    """

    def __init__(self, temperature, top_k, top_p, vocab_size, rng):
        if not is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
            raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
        if 0 < temperature < MIN_TEMPERATURE:
            raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:.3g}, where 1/T "
                             f"still fits in float32; got {temperature!r}")
        if top_k is not None and (not is_integer(top_k) or top_k < 1):
            raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
        if top_p is not None and not (is_real(top_p) and 0 < top_p <= 1):
            raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
        self.temperature = float(temperature)
        self.top_k = None if top_k is None or top_k >= vocab_size else int(top_k)
        self.top_p = top_p
        self.rng = rng

    def sample(self, logits):
        """One token per row of ``logits`` (B, V) and its log-probability log π_T(token).

        With shifted logits s = (z − max z)/T (T = 1 when greedy), log π_T(a) = s_a − log Σ_j exp s_j:
        only the sampled entry is needed, so the full log-softmax is never formed.
        """
        shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, V): every s_j ≤ 0, max 0
        if self.temperature not in (0.0, 1.0):
            with np.errstate(over="ignore"):  # s_j ≤ 0 may become −inf at tiny T: p_j = 0, as it should
                shifted *= 1.0 / self.temperature
        if self.temperature == 0.0:
            token = shifted.argmax(axis=-1)
            normalizer = row_sums(np.exp(shifted))
        else:
            token, normalizer = self._draw(shifted)
        if not np.isfinite(normalizer).all():  # a NaN or infinite logit makes the whole row NaN
            rows = np.flatnonzero(~np.isfinite(normalizer)).tolist()
            raise FloatingPointError(f"logits of rows {rows} contain NaN or inf; cannot sample a token")
        return token, shifted[np.arange(len(token)), token] - np.log(normalizer)

    def _draw(self, shifted):
        """Inverse-CDF sampling of one token per row from p ∝ exp(shifted), after top-k/top-p truncation.

        Returns ``(token, Σ_j exp shifted_j)``, the sum over the untruncated row (the softmax's normaliser).
        With u ~ U[0, 1) and the cumulative sums F_j = p_1 + … + p_j, the token is the first j with
        F_j > u·F_V.  A cumulative sum is a sequential loop (about 4 ns an entry), so it runs on two
        levels: the sums of blocks of about √V entries (one matrix-vector product) and their cumulative
        sum find the block where u·F_V falls; then only that block is summed entry by entry.
        """
        B, V = shifted.shape
        block = math.isqrt(V - 1) + 1  # ⌈√V⌉ entries per block
        block_count = -(-V // block)
        padded = np.empty((B, block_count * block))  # p in float64 (sums of many terms); zeros pad the last block
        padded[:, V:] = 0.0
        probs = np.exp(shifted, out=padded[:, :V])  # (B, V)
        truncated = self.top_k is not None or self.top_p is not None
        if truncated:
            normalizer = row_sums(probs)
        if self.top_k is not None:
            kth_largest = np.partition(probs, -self.top_k, axis=-1)[:, -self.top_k][:, None]
            probs[probs < kth_largest] = 0.0
        if self.top_p is not None:
            order = np.argsort(-probs, axis=-1)
            sorted_probs = np.take_along_axis(probs, order, axis=-1)
            mass_before = np.cumsum(sorted_probs, axis=-1) - sorted_probs
            sorted_probs[mass_before >= self.top_p * sorted_probs.sum(-1, keepdims=True)] = 0.0
            np.put_along_axis(probs, order, sorted_probs, axis=-1)
        blocks = padded.reshape(B, block_count, block)
        block_sums = row_sums(blocks)  # (B, block_count)
        block_starts = np.zeros((B, block_count + 1))  # F before each block, and the total F_V
        np.cumsum(block_sums, axis=1, out=block_starts[:, 1:])
        if not truncated:
            normalizer = block_starts[:, -1]
        threshold = self.rng.random(B) * block_starts[:, -1]  # u·F_V
        rows = np.arange(B)
        chosen = first_above(block_starts[:, 1:], threshold, block_sums)  # (B,)
        within = blocks[rows, chosen]  # (B, block)
        threshold -= block_starts[rows, chosen]  # what remains after the earlier blocks
        return chosen * block + first_above(np.cumsum(within, axis=1), threshold, within), normalizer


def first_above(cumulative, threshold, mass):
    """Per row, the first index j with ``cumulative[j] > threshold``, where cumulative = cumsum(mass).

    That entry has mass > 0 (the sum grew past the threshold there).  If rounding leaves no entry
    above the threshold, the last entry with mass > 0: a token of probability 0 is never drawn.
    """
    first = (cumulative <= threshold[:, None]).sum(axis=1)
    if first.max() < mass.shape[1]:  # cumulative[first] > cumulative[first − 1]: mass[first] > 0
        return first
    last_with_mass = mass.shape[1] - 1 - np.argmax(mass[:, ::-1] > 0, axis=1)
    return np.minimum(first, last_with_mass)

"""A GPT-2 transformer in NumPy with a hand-written backward pass.

Architecture (exactly GPT-2's), for token ids x_1..x_T:

    h⁰_t = E[x_t] + P[pos_t]                                    token + position embeddings
    a    = h + Attn(LN₁(h))                                     pre-LayerNorm block, causal attention
    h'   = a + MLP(LN₂(a)),   MLP(u) = GELU(u W_fc + b_fc) W_proj + b_proj
    z_t  = LN_f(hᴸ_t) Eᵀ                                         LM head tied to the token embedding

Parameters live in one flat dict named exactly like a Hugging Face GPT-2 checkpoint
(``transformer.h.0.attn.c_attn.weight`` is (C, 3C): ``x @ w + b``), so real GPT-2 weights converted
to NumPy load as they are.

``serial_forward`` is the forward pass, layer by layer, and returns the activations backward needs
(named, as llm.c names them: :class:`BlockActivations`); ``serial_backward`` is that forward read in
reverse and adds into the gradient buffers.  The public ``forward`` and ``backward`` check their
arguments (``minippo.nn.inputs``) and run those serial passes on shards of the batch rows in threads
(``minippo.nn.data_parallel``).  The final hidden state (after LN_f) is kept in ``self.hidden`` so
that value and score heads (``minippo.nn.heads``) can read it and send their gradient back through
``backward``.  Generation with a KV cache is in ``minippo.nn.generation``, sampling in
``minippo.nn.sampling``.

Left padding follows Hugging Face: pad keys are masked and the position of a token counts only the
real tokens before it (``pos = cumsum(mask) − 1``, clipped at 0), so a padded row gives the same
logits on its real tokens as the row alone.
"""
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import NamedTuple

import numpy as np

from minippo.checks import integer_at_least
from minippo.nn.attention import attention_backward, attention_bias, attention_forward
from minippo.nn.data_parallel import RowParallel
from minippo.nn.inputs import (
    check_attention_mask,
    check_output_gradients,
    check_parameters,
    check_targets,
    check_token_ids,
)
from minippo.nn.layers import (
    embedding_backward,
    embedding_forward,
    gelu_backward,
    gelu_forward,
    layernorm_backward,
    layernorm_forward,
    linear_backward,
    linear_forward,
)
from minippo.nn.lm_head import lm_head_cross_entropy
from minippo.nn.module import Module, as_generator, check_dtype
from minippo.parallel import map_shards, row_shards

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
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            params[name] = np.ones(shape, dtype=config.dtype)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype=config.dtype)
        else:
            std = residual_std if name.endswith("c_proj.weight") else 0.02
            params[name] = rng.standard_normal(shape, dtype=config.dtype) * std
    return params


class BlockActivations(NamedTuple):
    """What one block's forward keeps for its backward; rows are the B·T positions."""

    ln1_norm: np.ndarray  # x̂ = (x − μ)/σ of LN₁                                 (B*T, C)
    ln1_rstd: np.ndarray  # 1/σ of LN₁                                           (B*T, 1)
    q: np.ndarray  # queries                                                     (B, nh, T, hs)
    k: np.ndarray  # keys                                                        (B, nh, T, hs)
    v: np.ndarray  # values                                                      (B, nh, T, hs)
    att: list  # attention weights, one (P, 1/l) pair per block of queries (attention_forward)
    atty: np.ndarray  # attention output, heads merged: the input of attn.c_proj  (B*T, C)
    ln2_norm: np.ndarray  # x̂ of LN₂                                             (B*T, C)
    ln2_rstd: np.ndarray  # 1/σ of LN₂                                           (B*T, 1)
    fc: np.ndarray  # u W_fc + b_fc, the GELU's input                            (B*T, 4C)
    gelu_gate: np.ndarray  # the GELU's gate s (gelu_forward)                    (B*T, 4C)


class Activations(NamedTuple):
    """What the whole forward keeps for its backward."""

    idx: np.ndarray  # token ids                                                 (B, T)
    positions: np.ndarray  # position ids                                        (B, T)
    blocks: list  # a BlockActivations per layer
    hidden: np.ndarray  # LN_f(hᴸ), the LM head's input                         (B, T, C)
    lnf_norm: np.ndarray  # x̂ of LN_f                                           (B*T, C)
    lnf_rstd: np.ndarray  # 1/σ of LN_f                                         (B*T, 1)


def positions_and_bias(mask, B, T, dtype):
    """What a (left-padded) batch of B sequences of length T needs besides its tokens.

    Position ids (B, T): 0..T−1, or with padding cumsum(mask) − 1 clipped at 0; and the additive
    attention bias, causal plus padding: (T, T) without a mask, else (B, 1, T, T).
    """
    if mask is None:
        positions = np.broadcast_to(np.arange(T), (B, T))
    else:
        positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    return positions, attention_bias(np.arange(T), T, mask, dtype)


class GPT(Module):
    """GPT-2 with manual backward.  ``GPT(config, seed=0)``; see the module docstring for the math.

    ``GPT(config, params=arrays)`` uses the given arrays themselves (named as :func:`parameter_shapes`,
    in the config's dtype; e.g. memory-mapped weights of a checkpoint) and skips the random initialisation.
    """

    def __init__(self, config, seed=None, params=None):
        if not isinstance(config, GPTConfig):
            raise TypeError(f"config must be a GPTConfig, got {type(config).__name__}")
        self.config = config
        super().__init__(init_parameters(config, as_generator(seed)) if params is None
                         else check_parameters(params, parameter_shapes(config), config.dtype))
        self.hidden = None
        self._parallel = RowParallel()  # the activations of the last forward, per shard of rows
        self._last_forward = None  # "logits", "hidden" or "loss": what the last forward computed
        self._head_dhidden = self._head_dwte = None  # the LM head's gradients made by loss()
        names = list(parameter_shapes(config))
        self._layer_groups = {layer: [name for name in names if name.startswith(f"transformer.h.{layer}.")]
                              for layer in range(config.n_layer)}  # a block's parameters, for RowParallel

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
    # the public passes: check the arguments, run the serial passes on shards of rows
    # ------------------------------------------------------------------------------------------
    def forward(self, idx, attention_mask=None, compute_logits=True):
        """Logits (B, T, vocab) for token ids ``idx`` (B, T); keeps what ``backward`` needs.

        ``attention_mask`` (B, T) of 0/1 marks left padding.  The final hidden state is kept in
        ``self.hidden`` (B, T, C).  With ``compute_logits=False`` the LM head is skipped (for a critic
        or reward model that reads only the hidden state) and None is returned.
        Runs :meth:`serial_forward` on shards of the rows in parallel threads (``minippo.nn.data_parallel``).
        """
        idx = check_token_ids(idx, self.config, self.config.block_size)
        mask = check_attention_mask(attention_mask, idx.shape)
        B, T = idx.shape
        logits = np.empty((B, T, self.config.vocab_size), dtype=self.config.dtype) if compute_logits else None

        def forward_rows(_, rows, positions, bias, hidden):
            return self.serial_forward(idx[rows], positions, bias, hidden,
                                       None if logits is None else logits[rows])

        self._sharded_forward(forward_rows, idx, mask, "logits" if compute_logits else "hidden")
        return logits

    def loss(self, idx, targets, attention_mask=None, ignore_index=-1, scale=1.0):
        """Mean cross-entropy −(1/n) Σ_t log π(targets_t) of the next-token distributions of ``idx``
        (B, T) over the n positions whose target is not ``ignore_index``, times ``scale`` (a rank's share
        of a batch under MPI), which scales its gradient too; a float.  Made for training.

        The LM head and the cross-entropy run fused over chunks of rows
        (:func:`minippo.nn.lm_head.lm_head_cross_entropy`): the (B, T, vocab) logits are never held
        whole, and their gradient is made with the loss, in the same pass (dE into a buffer of the
        model, dL/dh beside it); the next :meth:`backward` (with no argument, or with ``dhidden`` from
        heads reading ``self.hidden``) sends it through the trunk and adds dE into ``grads``.  The same
        number as ``cross_entropy(model.forward(idx), targets)`` (its textbook path, which is the one
        to use for an evaluation without backward).
        """
        idx = check_token_ids(idx, self.config, self.config.block_size)
        mask = check_attention_mask(attention_mask, idx.shape)
        targets = check_targets(targets, idx.shape, self.config.vocab_size, ignore_index)
        counted = targets != ignore_index
        weights = counted * np.asarray(scale / counted.sum(), dtype=self.config.dtype)  # w_t = scale/n or 0: (B, T)
        targets = np.where(counted, targets, 0)

        def forward_rows(_, rows, positions, bias, hidden):
            return self.serial_forward(idx[rows], positions, bias, hidden)

        self._sharded_forward(forward_rows, idx, mask, "loss")
        wte = self.params["transformer.wte.weight"]
        if self._head_dwte is None:
            self._head_dwte = np.empty_like(wte)
        self._head_dwte.fill(0.0)
        loss, dhidden = lm_head_cross_entropy(self.hidden.reshape(-1, wte.shape[1]), wte, targets.reshape(-1),
                                              weights.reshape(-1), self._head_dwte)  # (B*T, C) rows
        self._head_dhidden = dhidden.reshape(self.hidden.shape)  # (B*T, C) -> (B, T, C)
        return loss

    def _sharded_forward(self, forward_rows, idx, mask, kind):
        """Run ``forward_rows(shard, rows, positions, bias, hidden)`` on shards of the rows in threads;
        keep the hidden state and what backward needs."""
        B, T = idx.shape
        positions, bias = positions_and_bias(mask, B, T, self.config.dtype)
        hidden = np.empty((B, T, self.config.n_embd), dtype=self.config.dtype)
        self._parallel.forward(lambda index, rows: forward_rows(
            index, rows, positions[rows], bias if mask is None else bias[rows], hidden[rows]), B)
        self.hidden, self._last_forward = hidden, kind

    def backward(self, dlogits=None, dhidden=None):
        """Add the gradients of the last forward's loss into ``self.grads`` and return it.

        dlogits: (B, T, vocab) gradient w.r.t. the logits (None if the loss does not use them);
        dhidden: (B, T, C) gradient w.r.t. ``self.hidden`` from heads reading it (None if none).
        After :meth:`loss`, the cross-entropy's own gradient is added as well (and dlogits is refused).
        The tied token embedding receives both its LM-head and its embedding contributions.
        Runs :meth:`serial_backward` on the shards of the forward, in parallel threads, and adds
        their gradients in a fixed order (``minippo.nn.data_parallel``).
        """
        if self._last_forward is None:
            raise RuntimeError("backward called before forward: run model.forward(idx) first")
        dlogits, dhidden = check_output_gradients(dlogits, dhidden, self.hidden.shape[:2], self.config,
                                                  self._last_forward)
        if self._last_forward == "loss":  # the LM head's gradient, made by loss()
            dhidden = self._head_dhidden if dhidden is None else dhidden + self._head_dhidden

        def backward_rows(rows, activations, grads, layer_done):
            self.serial_backward(activations, None if dlogits is None else dlogits[rows],
                                 None if dhidden is None else dhidden[rows], grads, layer_done)

        self._parallel.backward(backward_rows, self.grads, self._layer_groups)
        if self._last_forward == "loss":  # dE of the LM head, added by rows of the vocabulary in threads
            dwte, head_dwte = self.grads["transformer.wte.weight"], self._head_dwte
            map_shards(lambda _, rows: np.add(dwte[rows], head_dwte[rows], out=dwte[rows]), row_shards(len(dwte)))
        return self.grads

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
                 eos_token_id=None, attention_mask=None, rng=None, pad_token_id=None):
        """Sample ``max_new_tokens`` tokens after the (left-padded) prompts ``idx`` (B, T) with a KV
        cache; returns a :class:`~minippo.nn.generation.Generation`.  See :func:`minippo.nn.generation.generate`."""
        from minippo.nn.generation import generate  # generation imports this module

        return generate(self, idx, max_new_tokens, temperature, top_k, top_p, eos_token_id,
                        attention_mask, rng, pad_token_id)

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

    # ------------------------------------------------------------------------------------------
    # forward
    # ------------------------------------------------------------------------------------------
    def embed(self, idx, positions):
        """h⁰ = E[x] + P[pos]: token plus position embeddings -> idx.shape + (C,)."""
        x = embedding_forward(idx, self.params["transformer.wte.weight"])
        x += embedding_forward(positions, self.params["transformer.wpe.weight"])
        return x

    def block_forward(self, layer, x, B, T, bias):
        """One transformer block on x (B*T, C): returns its output and its :class:`BlockActivations`."""
        p = self.params
        prefix = f"transformer.h.{layer}."
        nh, hs = self.config.n_head, self.config.head_size
        ln1, ln1_norm, ln1_rstd = layernorm_forward(x, p[prefix + "ln_1.weight"], p[prefix + "ln_1.bias"])
        qkv = linear_forward(ln1, p[prefix + "attn.c_attn.weight"], p[prefix + "attn.c_attn.bias"])
        q, k, v = qkv.reshape(B, T, 3, nh, hs).transpose(2, 0, 3, 1, 4)  # (B*T, 3C) -> 3 × (B, nh, T, hs)
        atty = np.empty((B, T, nh, hs), dtype=x.dtype)
        _, att = attention_forward(q, k, v, bias, out=atty.transpose(0, 2, 1, 3), causal=True)  # heads merged in place
        atty = atty.reshape(B * T, -1)  # (B, T, nh, hs) -> (B*T, C)
        a = linear_forward(atty, p[prefix + "attn.c_proj.weight"], p[prefix + "attn.c_proj.bias"])
        a += x  # residual: a = x + Attn(LN₁(x))
        ln2, ln2_norm, ln2_rstd = layernorm_forward(a, p[prefix + "ln_2.weight"], p[prefix + "ln_2.bias"])
        fc = linear_forward(ln2, p[prefix + "mlp.c_fc.weight"], p[prefix + "mlp.c_fc.bias"])  # (B*T, 4C)
        fc_gelu, gelu_gate = gelu_forward(fc)
        out = linear_forward(fc_gelu, p[prefix + "mlp.c_proj.weight"], p[prefix + "mlp.c_proj.bias"])
        out += a  # residual: h' = a + MLP(LN₂(a))
        # LN₁(x), LN₂(a) and GELU(fc) are not kept: backward recomputes each from x̂ or the gate in one
        # pass, which costs less than holding 6C floats per row per layer
        return out, BlockActivations(ln1_norm, ln1_rstd, q, k, v, att, atty, ln2_norm, ln2_rstd, fc, gelu_gate)

    def serial_forward(self, idx, positions, bias, hidden, logits=None):
        """The forward pass over one batch (B, T), layer by layer, in the calling thread.

        Writes the final hidden state into ``hidden`` (B, T, C) and, unless ``logits`` is None, the
        logits into it (B, T, V); returns the :class:`Activations` that :meth:`serial_backward` needs.
        """
        B, T = idx.shape
        x = self.embed(idx, positions).reshape(B * T, -1)  # (B, T, C) -> (B*T, C)
        blocks = []
        for layer in range(self.config.n_layer):
            x, block = self.block_forward(layer, x, B, T, bias)
            blocks.append(block)
        lnf, lnf_norm, lnf_rstd = layernorm_forward(
            x, self.params["transformer.ln_f.weight"], self.params["transformer.ln_f.bias"])
        hidden[...] = lnf.reshape(B, T, -1)  # (B*T, C) -> (B, T, C)
        if logits is not None:  # z = LN_f(h) Eᵀ: (B*T, C) @ (C, V) -> (B*T, V)
            np.matmul(lnf, self.params["transformer.wte.weight"].T, out=logits.reshape(B * T, -1))
        return Activations(idx, positions, blocks, hidden, lnf_norm, lnf_rstd)

    # ------------------------------------------------------------------------------------------
    # backward: the forward read in reverse
    # ------------------------------------------------------------------------------------------
    def block_backward(self, layer, dout, acts, B, T, g):
        """Gradient through one block: dout (B*T, C) w.r.t. its output -> gradient w.r.t. its input x.

        ``acts`` are the block's :class:`BlockActivations`; parameter gradients are added into ``g``."""
        p = self.params
        prefix = f"transformer.h.{layer}."
        nh, hs = self.config.n_head, self.config.head_size
        # MLP branch: h' = a + MLP(LN₂(a))
        fc_gelu = acts.fc * acts.gelu_gate  # GELU(fc) = fc·s, recomputed
        dfc_gelu = linear_backward(dout, fc_gelu, p[prefix + "mlp.c_proj.weight"],
                                   g[prefix + "mlp.c_proj.weight"], g[prefix + "mlp.c_proj.bias"])
        dfc = gelu_backward(dfc_gelu, acts.fc, fc_gelu, acts.gelu_gate)
        ln2 = acts.ln2_norm * p[prefix + "ln_2.weight"] + p[prefix + "ln_2.bias"]  # LN₂(a), recomputed
        dln2 = linear_backward(dfc, ln2, p[prefix + "mlp.c_fc.weight"],
                               g[prefix + "mlp.c_fc.weight"], g[prefix + "mlp.c_fc.bias"])
        da = layernorm_backward(dln2, acts.ln2_norm, acts.ln2_rstd, p[prefix + "ln_2.weight"],
                                g[prefix + "ln_2.weight"], g[prefix + "ln_2.bias"])
        da += dout  # the residual path
        # attention branch: a = x + Attn(LN₁(x))
        datty = linear_backward(da, acts.atty, p[prefix + "attn.c_proj.weight"],
                                g[prefix + "attn.c_proj.weight"], g[prefix + "attn.c_proj.bias"])
        datty = datty.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B*T, C) -> (B, nh, T, hs)
        atty = acts.atty.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)  # (B*T, C) -> (B, nh, T, hs)
        dqkv = np.empty((B, T, 3, nh, hs), dtype=dout.dtype)
        attention_backward(datty, acts.q, acts.k, acts.v, atty, acts.att,
                           out=tuple(dqkv.transpose(2, 0, 3, 1, 4)))  # 3 × (B, nh, T, hs)
        dqkv = dqkv.reshape(B * T, -1)  # -> (B*T, 3C)
        ln1 = acts.ln1_norm * p[prefix + "ln_1.weight"] + p[prefix + "ln_1.bias"]  # LN₁(x), recomputed
        dln1 = linear_backward(dqkv, ln1, p[prefix + "attn.c_attn.weight"],
                               g[prefix + "attn.c_attn.weight"], g[prefix + "attn.c_attn.bias"])
        dx = layernorm_backward(dln1, acts.ln1_norm, acts.ln1_rstd, p[prefix + "ln_1.weight"],
                                g[prefix + "ln_1.weight"], g[prefix + "ln_1.bias"])
        dx += da  # the residual path
        return dx

    def serial_backward(self, acts, dlogits, dhidden, grads, layer_done=None):
        """The backward pass of one :meth:`serial_forward`, in the calling thread, adding into ``grads``.

        dlogits (B, T, V) and dhidden (B, T, C), either may be None, are the gradients w.r.t. its
        logits and hidden state.  ``layer_done(layer)``, if given, is called once a block's parameter
        gradients are complete (``minippo.nn.data_parallel`` reduces the shards' parts then)."""
        B, T = acts.idx.shape
        C, V = self.config.n_embd, self.config.vocab_size
        wte = self.params["transformer.wte.weight"]
        dlnf = np.zeros((B * T, C), dtype=self.config.dtype)
        if dlogits is not None:  # z = LN_f(h) Eᵀ
            dlogits = dlogits.reshape(B * T, V)
            grads["transformer.wte.weight"] += dlogits.T @ acts.hidden.reshape(B * T, C)  # (V, B*T) @ (B*T, C)
            dlnf += dlogits @ wte  # (B*T, V) @ (V, C)
        if dhidden is not None:
            dlnf += dhidden.reshape(B * T, C)
        dx = layernorm_backward(dlnf, acts.lnf_norm, acts.lnf_rstd, self.params["transformer.ln_f.weight"],
                                grads["transformer.ln_f.weight"], grads["transformer.ln_f.bias"])
        for layer in reversed(range(self.config.n_layer)):
            dx = self.block_backward(layer, dx, acts.blocks[layer], B, T, grads)
            if layer_done is not None:
                layer_done(layer)
        embedding_backward(dx, acts.idx, grads["transformer.wte.weight"])
        embedding_backward(dx, acts.positions, grads["transformer.wpe.weight"])

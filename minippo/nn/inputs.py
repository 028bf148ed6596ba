"""What the GPT accepts: every check of the arguments of ``forward``, ``backward`` and ``generate``.

The model's math (``gpt.py``, ``generation.py``, ``sampling.py``) trusts its inputs; these functions
run once at those public entry points and raise ``TypeError`` (wrong kind) or ``ValueError`` (out of
range) with a message that names the argument.
"""
import math
from collections.abc import Mapping

import numpy as np

from minippo.checks import is_integer, is_real, some_names
from minippo.nn.module import check_array

MIN_TEMPERATURE = 1.0 / float(np.finfo(np.float32).max)  # below it, z/T overflows to ±inf (and 0·inf = NaN)


def check_token_ids(idx, config, max_length):
    """``idx`` as an integer array (B, T) of token ids in [0, vocab_size), with 1 <= T <= ``max_length``
    (``block_size``, or less to leave room for ``max_new_tokens``)."""
    idx = np.asarray(idx)
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"idx must be an integer array of token ids, got dtype {idx.dtype}")
    if idx.ndim != 2 or 0 in idx.shape:
        raise ValueError(f"idx must have shape (B, T) with B >= 1 and T >= 1, got {idx.shape}")
    if idx.shape[1] > max_length:
        raise ValueError(
            f"sequence length {idx.shape[1]} exceeds what fits in block_size {config.block_size}"
            + ("" if max_length == config.block_size else " together with max_new_tokens")
        )
    bad = (idx < 0) | (idx >= config.vocab_size)
    if bad.any():
        raise ValueError(f"idx must hold token ids in [0, {config.vocab_size}); found {idx[bad][0]}")
    return idx


def check_attention_mask(attention_mask, shape):
    """None, or ``attention_mask`` as an int64 array of 0 (pad) and 1 (real token) of shape ``shape``."""
    if attention_mask is None:
        return None
    mask = np.asarray(attention_mask)
    if mask.shape != shape:
        raise ValueError(f"attention_mask must have the shape of idx {shape}, got {mask.shape}")
    if not np.isin(mask, (0, 1)).all():
        raise ValueError("attention_mask must contain only 0 (pad) and 1 (real token)")
    return mask.astype(np.int64)


def check_targets(targets, shape, vocab_size, ignore_index):
    """``targets`` as an integer array of ``shape`` holding token ids in [0, vocab_size) or
    ``ignore_index`` (positions that do not count), with at least one that counts."""
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise TypeError(f"targets must be an integer array of token ids, got dtype {targets.dtype}")
    if targets.shape != shape:
        raise ValueError(f"targets must have the shape of idx {shape}, got {targets.shape}")
    bad = ((targets < 0) | (targets >= vocab_size)) & (targets != ignore_index)
    if bad.any():
        raise ValueError(f"targets must hold token ids in [0, {vocab_size}) or ignore_index={ignore_index}; "
                         f"found {targets[bad][0]}")
    if (targets == ignore_index).all():
        raise ValueError(f"every target equals ignore_index={ignore_index}; there is nothing to score")
    return targets


def check_output_gradients(dlogits, dhidden, shape, config, last_forward):
    """The gradients ``backward`` receives: dlogits (B, T, V) and dhidden (B, T, C) in the model's dtype;
    dlogits only if the last forward computed logits ("logits"), at least one of them unless it was a
    ``loss`` (which brings its own)."""
    if dlogits is None and dhidden is None and last_forward != "loss":
        raise ValueError("backward needs dlogits, dhidden or both")
    if dlogits is not None:
        if last_forward == "hidden":
            raise ValueError("dlogits given, but forward ran with compute_logits=False")
        if last_forward == "loss":
            raise ValueError("dlogits given, but the last forward was loss(), which computes no logits")
        dlogits = check_array(dlogits, shape + (config.vocab_size,), config.dtype, "dlogits")
    if dhidden is not None:
        dhidden = check_array(dhidden, shape + (config.n_embd,), config.dtype, "dhidden")
    return dlogits, dhidden


def check_sampling(temperature, top_k, top_p):
    """Sampling options: temperature 0 (greedy) or in [MIN_TEMPERATURE, ∞), top_k None or >= 1,
    top_p None or in (0, 1]."""
    if not is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if 0 < temperature < MIN_TEMPERATURE:
        raise ValueError(f"temperature must be 0 (greedy) or at least {MIN_TEMPERATURE:.3g}, where 1/T "
                         f"still fits in float32; got {temperature!r}")
    if top_k is not None and (not is_integer(top_k) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive integer, got {top_k!r}")
    if top_p is not None and not (is_real(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")


def check_generate(config, idx, max_new_tokens, attention_mask, eos_token_id, pad_token_id):
    """The prompt and options of ``generate``: returns ``(idx, mask, pad_token_id)`` with the mask all
    ones when none is given (prompts must be left-padded) and the pad id defaulting to the EOS id (or 0)."""
    if not is_integer(max_new_tokens) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
    idx = check_token_ids(idx, config, config.block_size - max_new_tokens)
    mask = check_attention_mask(attention_mask, idx.shape)
    if mask is None:
        mask = np.ones(idx.shape, dtype=np.int64)
    elif not mask[:, -1].all():
        raise ValueError("attention_mask must be left-padded: the last prompt position of every "
                         "row must be a real token (mask 1)")
    for name, value in (("eos_token_id", eos_token_id), ("pad_token_id", pad_token_id)):
        if value is not None and not (is_integer(value) and 0 <= value < config.vocab_size):
            raise ValueError(f"{name} must be None or an integer in [0, {config.vocab_size}), got {value!r}")
    if pad_token_id is None:
        pad_token_id = 0 if eos_token_id is None else eos_token_id
    return idx, mask, pad_token_id


def check_parameters(params, shapes, dtype):
    """``params`` as a dict of exactly the arrays ``shapes`` names (``minippo.nn.gpt.parameter_shapes``), each
    of its shape and in ``dtype`` (not copied); a ValueError lists what is missing, unexpected or wrong."""
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    problems = [f"missing {name}" for name in shapes if name not in params]
    problems += [f"unexpected {name}" for name in params if name not in shapes]
    problems += [f"{name}: {np.shape(value)} {getattr(value, 'dtype', type(value).__name__)}, expected "
                 f"{shapes[name]} {dtype}" for name, value in params.items()
                 if name in shapes and (not isinstance(value, np.ndarray) or value.shape != shapes[name]
                                        or value.dtype != dtype)]
    if problems:
        raise ValueError("params do not fit the config: " + some_names(problems, separator="; "))
    return dict(params)

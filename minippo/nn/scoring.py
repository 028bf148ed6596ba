"""Scoring a GPT's continuations without training it: the forward pass with no backward caches.

A frozen model (RLHF's reference π_ref, a scorer) only ever needs

    log π_T(x_{t+1} | x_1..x_t) = log softmax(z_t / T)[x_{t+1}],   t = start − 1 .. T − 2,

the log-probabilities of the tokens from column ``start`` on.  :func:`continuation_logprobs` runs the
trunk (``GPT.serial_forward``) on shards of the batch rows in threads and keeps nothing for a backward
pass: each chunk's activations are dropped as soon as its rows are scored, and ``GPT.forward``'s kept
activations and hidden state are left as they were.  The LM head z_t = LN_f(h_t) Eᵀ and the log-softmax
run only on the scored columns, not on the prompt's, so the (B, T, V) logits are never made.  A thread
runs its rows in chunks of at most ``CHUNK_POSITIONS`` positions, so that a chunk's activations stay near
the cache and its logits are bounded whatever the batch (measured at the demo's 64 rows of 76 tokens on 2
threads: 26.3 ms in chunks of 16 rows, 28.8 ms in one chunk of 32, 28.1 in chunks of 8).

The numbers are ``token_logprobs_forward(model.forward(idx)[:, start − 1:−1] / T, idx[:, start:])``'s
within round-off (the products run on other blocks of rows); ``tests/test_scoring.py`` checks it.
"""
import numpy as np

from minippo.nn.categorical import token_logprobs_forward
from minippo.nn.gpt import positions_and_bias
from minippo.nn.inputs import check_attention_mask, check_token_ids
from minippo.parallel import even_slices, map_shards, row_shards

CHUNK_POSITIONS = 2048  # rows × T of one chunk of a thread's rows, at most (one row at the least)


def continuation_logprobs(model, idx, attention_mask=None, start=1, temperature=1.0):
    """log π_T(idx[:, t] | idx[:, :t]) for every column t >= ``start`` of the (left-padded) token ids
    ``idx`` (B, T): an array (B, T − start) in the model's dtype; no backward can follow."""
    idx = check_token_ids(idx, model.config, model.config.block_size)
    mask = check_attention_mask(attention_mask, idx.shape)
    B, T = idx.shape
    if not 1 <= start < T:
        raise ValueError(f"start must be in [1, {T}) (the columns of idx after the first), got {start}")
    dtype, C = model.config.dtype, model.config.n_embd
    positions, bias = positions_and_bias(mask, B, T, dtype)
    wte = model.params["transformer.wte.weight"]
    logprobs = np.empty((B, T - start), dtype=dtype)

    def score_chunk(rows):
        hidden = np.empty((rows.stop - rows.start, T, C), dtype=dtype)
        model.serial_forward(idx[rows], positions[rows], bias if mask is None else bias[rows], hidden)
        logits = hidden[:, start - 1:-1].reshape(-1, C) @ wte.T  # (b, T − start, C) -> (b·(T − start), V)
        if temperature != 1.0:  # z / 1 is z: no pass over the logits for it
            logits /= temperature
        scored, _ = token_logprobs_forward(logits, idx[rows, start:].reshape(-1))
        logprobs[rows] = scored.reshape(-1, T - start)  # (b·(T − start),) -> (b, T − start)

    def score_rows(_, rows):
        count = rows.stop - rows.start
        chunks = min(count, -(-count * T // CHUNK_POSITIONS))  # ⌈positions / CHUNK_POSITIONS⌉, one row at the least
        for chunk in even_slices(rows.start, rows.stop, chunks):
            score_chunk(chunk)

    map_shards(score_rows, row_shards(B))
    return logprobs

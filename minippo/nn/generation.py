"""Sampling text from a GPT with a KV cache: ``generate`` (called as ``GPT.generate``).

A sequence grows one token at a time.  Recomputing the whole forward for every new token
(:func:`decode_step_reference`, the textbook version) repeats the work of every earlier position;
instead the keys and values of earlier positions are kept in a cache (B, nh, T_max, hs) per layer, so
a new token costs one position of attention (:func:`decode_step`):

1. prefill: the prompt runs through the ordinary forward (``GPT.serial_forward``), and every layer's
   keys and values are copied into the cache;
2. decode: the newest token alone runs through the blocks, its query attending to every cached key;
   only the last position goes through the LM head, and the sampler (``minippo.nn.sampling``) draws.

The decode step is the forward specialised to one position per row; it keeps nothing for a backward
pass.  (Folding the LayerNorm gains into the weights after them would save two passes over a few rows
per LayerNorm, for a copy of 7C² floats per layer at every ``generate`` call: 200 MB and seconds at
GPT-2 124M under load, so the weights are used as they are.)  The prompt's prefill runs on shards of
the rows in threads, as ``GPT.forward`` does.  Its
products split the weights' columns across threads (:func:`linear_by_columns`, :func:`lm_head_by_rows`),
so that each thread streams its own share of the weights once per step (at batch 1, BLAS's own threads do),
where that pays off: a few rows times weights too large for the cache (:func:`panels_pay_off`).
"""
import contextlib
from typing import NamedTuple

import numpy as np

from minippo.blas import blas_threads
from minippo.nn.attention import attention_bias, attention_decode
from minippo.nn.gpt import positions_and_bias
from minippo.nn.inputs import check_generate
from minippo.nn.layers import gelu_forward, layernorm_forward
from minippo.nn.module import as_generator
from minippo.nn.sampling import TokenSampler
from minippo.parallel import MIN_PARALLEL_SIZE, map_shards, row_shards


class Generation(NamedTuple):
    """Output of :meth:`GPT.generate`.

    tokens:   (B, T + max_new_tokens) prompt followed by the sampled tokens (pad after a row's EOS);
    logprobs: (B, max_new_tokens) log π(token) under the temperature-scaled distribution, 0 where masked;
    mask:     (B, max_new_tokens) True for sampled tokens up to and including a row's EOS.
    """

    tokens: np.ndarray
    logprobs: np.ndarray
    mask: np.ndarray


def generate(model, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None,
             eos_token_id=None, attention_mask=None, rng=None, pad_token_id=None):
    """Sample ``max_new_tokens`` tokens after the (left-padded) prompts ``idx`` (B, T) of ``model``.

    Sampling uses π_T = softmax(z / T); ``temperature=0`` is greedy (logprobs then under T = 1).
    ``top_k`` keeps the k most likely tokens and ``top_p`` the smallest set with probability ≥ p; the
    returned logprobs are under the full temperature-scaled distribution, so they equal a forward pass
    over the finished sequence.  After a row samples ``eos_token_id`` it is filled with
    ``pad_token_id`` (default: the EOS id).  ``rng``: a Generator or a seed.  Returns a :class:`Generation`.
    """
    config = model.config
    idx, mask, pad_token_id = check_generate(config, idx, max_new_tokens, attention_mask, eos_token_id,
                                             pad_token_id)
    sampler = TokenSampler(temperature, top_k, top_p, config.vocab_size, as_generator(rng))
    B, T0 = idx.shape
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

    # prefill: the whole prompt at once, on shards of the rows in threads; its keys and values into the cache
    positions, bias = positions_and_bias(None if prompt_unpadded else mask, B, T0, config.dtype)
    hidden = np.empty((B, T0, config.n_embd), dtype=config.dtype)

    def prefill_rows(_, rows):
        prompt = model.serial_forward(idx[rows], positions[rows], bias if prompt_unpadded else bias[rows],
                                      hidden[rows])
        for (keys, values), block in zip(kv_caches, prompt.blocks):
            keys[rows, :, :T0] = block.k
            values[rows, :, :T0] = block.v

    map_shards(prefill_rows, row_shards(B))
    last_hidden = hidden[:, -1]  # (B, C): only the last position goes through the LM head
    next_position = positions[:, -1] + 1  # (B,)
    wte = model.params["transformer.wte.weight"]
    panels = step_in_panels(B, model)
    with decode_threads(panels):
        for step in range(max_new_tokens):
            logits = decode_lm_head(wte, last_hidden, panels)
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
            last_hidden = decode_step(model, tokens[:, start], next_position, bias, kv_caches, start)
            next_position = next_position + 1
    return Generation(tokens, logprobs, sampled_mask)


# A decode step reads every weight once for a few rows of activations: its time is the time to stream
# the weights from memory.  Splitting the few rows across threads would make each thread stream every
# weight; splitting a weight's columns (the LM head's rows) gives each thread its own slice to stream.
# Measured at GPT-2 124M on 2 cores (session 7, loaded): 4-5x faster than one BLAS call with 2 threads at batch 8.
#
# Within its slice each thread multiplies panels of at most SMALL_PRODUCT = M·N·K multiply-adds: below
# that size OpenBLAS runs its small-matrix kernels, which read the weights where they lie, while a
# larger product first copies ("packs") them into a buffer -- for a few rows that copy costs more
# than the product.  Panels of a (C_in, C_out) weight are blocks of whole rows of its slice, so each
# is read in long runs; their partial products are summed.  Measured on this 2-core machine at batch
# 8 (GPT-2 124M, c_fc-shaped weights, 2 threads): 15 GB/s in panels against 5-11 GB/s in one call.
# (C_out, C_in) copies of the block weights, made at every generate call so that an optimiser's
# in-place update can never leave them stale, were measured and left out (session 10, GPT-2 124M,
# batch 8, 64 new tokens): the block products took about 35 instead of 40 ms per token, but the copies
# cost 340 MB and 0.25-0.35 s per call, more than they save at RLHF's 48 new tokens.
#
# One row is the exception: a matrix-vector product, which BLAS itself splits across its threads, each
# streaming its own share of the weight.  Its threads wait for work spinning, while a pool thread of
# minippo.parallel sleeps and takes long to wake on a virtual machine: at GPT-2 124M on this 2-core VM
# a step took 23 ms with BLAS's threads against 42 ms with the pool's, where at batch 8 the pool's
# panels win (66 ms against 77).
SMALL_PRODUCT = 100 ** 3

# The panels pay off only where a step streams its weights from memory: a few rows (at most FEW_ROWS)
# times a weight larger than a core's L2 cache (LARGE_WEIGHT; GPT-2's (768, 768) c_proj is one).  With
# more rows a product is dense enough for OpenBLAS's own kernels and threads, and a small weight stays
# in cache: there one BLAS call wins.
# Measured at GPT-2 124M (64 new tokens, 2 threads, quiet machine), ms per token in panels against one
# call: batch 8 59.5 / 70.4, batch 16 80.3 / 87.5, batch 32 134.6 / 119.2, batch 64 297 / 174; the
# demo's 2x96 policy samples 40 tokens for 64 prompts in 0.139 s in panels against 0.091 s in one call.
FEW_ROWS = 16
LARGE_WEIGHT = 1 << 19  # elements: 2 MB of float32, a core's L2 cache here


def panels_pay_off(rows, weight):
    """Whether :func:`linear_by_columns` and :func:`lm_head_by_rows` beat one BLAS call for ``rows``
    rows of activations times ``weight`` (one row: never, a matrix-vector product on BLAS's threads)."""
    return 1 < rows <= FEW_ROWS and weight.size >= LARGE_WEIGHT


def step_in_panels(rows, model):
    """Whether a decode step over ``rows`` rows runs its products in panels: all of them or none, and
    all once even the smallest weight, attention's (C, C) output projection, pays off (:func:`panels_pay_off`).

    All or none, because a product on BLAS's threads between the pool's panels leaves BLAS's threads
    spinning against the pool's on the same cores.  Measured (session 10, 2 threads): GPT-2 124M at
    batch 8, where every weight pays off, 59 ms per token; config M of ``bench_gpt.py`` at batch 8, where
    only its (2048, 256) LM head would, 1.34 s per call with the head alone in panels, 0.92 s with none.
    """
    return panels_pay_off(rows, model.params["transformer.h.0.attn.c_proj.weight"])


def decode_threads(panels):
    """The BLAS threads of a decode loop: one where its products run in panels on minippo's threads
    (``panels``, :func:`step_in_panels`), else BLAS's own.

    OpenBLAS's threads spin for about 0.1 s after a product they share; anything between the panels
    that woke them (attention over a short cache) would leave them spinning against the pool's threads
    on the same cores.  Measured at GPT-2 124M, batch 8, 2 threads (session 10, ms per token): 92 with
    the (768, 768) c_proj in one call on BLAS's 2 threads, 61 with it in panels, 59 in panels with BLAS
    held at one thread.
    """
    return blas_threads(1, rescan=False) if panels else contextlib.nullcontext()


def decode_linear(x, weight, bias, panels):
    """y = x W + b in a decode step: in column panels across threads if ``panels``, else one call."""
    return linear_by_columns(x, weight, bias) if panels else np.add(x @ weight, bias)


def decode_lm_head(wte, hidden, panels):
    """Logits z = h Eᵀ (B, V) in a decode step: by vocabulary rows across threads if ``panels``."""
    return lm_head_by_rows(wte, hidden) if panels else hidden @ wte.T


def linear_by_columns(x, weight, bias, panel=SMALL_PRODUCT):
    """y = x W + b for the few rows of x (B, C_in), each thread computing its own columns of y from its
    own columns of W (C_in, C_out), in blocks of rows of W of at most ``panel`` multiply-adds each:
    y[:, cols] = Σ_blocks x[:, rows] W[rows, cols] + b[cols]."""
    B, C_in = x.shape
    out = np.empty((B, weight.shape[1]), dtype=x.dtype)

    def columns(_, cols):
        width = cols.stop - cols.start
        step = max(1, panel // (width * B))  # rows of W per block
        y = out[:, cols]
        np.matmul(x[:, :step], weight[:step, cols], out=y)
        if step < C_in:
            partial = np.empty_like(y)
            for start in range(step, C_in, step):
                y += np.matmul(x[:, start:start + step], weight[start:start + step, cols], out=partial)
        y += bias[cols]

    map_shards(columns, row_shards(weight.shape[1]))
    return out


# OpenBLAS's small-matrix kernel for h Eᵀ (a transposed operand) is used only while the output block has
# at most 1,200 entries (vocabulary rows × B), besides M·N·K ≤ SMALL_PRODUCT: above that it packs.
# Measured at batch 8 (GPT-2 124M, 2 threads, session 10): 128 rows per block stream 11.6 GB/s, 162
# rows 4.3 GB/s.
SMALL_OUTPUT = 1200


def lm_head_by_rows(wte, hidden, panel=SMALL_PRODUCT):
    """Logits z = h Eᵀ (B, V) for the few rows of h (B, C), each thread computing its own columns of z
    from its own vocabulary rows of E, in blocks small enough for OpenBLAS's small-matrix kernel:
    z[:, rows] = h E[rows]ᵀ, written in place (no transposed copy of z)."""
    out = np.empty((len(hidden), len(wte)), dtype=hidden.dtype)
    step = max(1, min(panel // hidden.size, SMALL_OUTPUT // len(hidden)))  # vocabulary rows per block

    def vocabulary_rows(_, rows):
        for start in range(rows.start, rows.stop, step):
            block = slice(start, min(start + step, rows.stop))
            np.matmul(hidden, wte[block].T, out=out[:, block])

    map_shards(vocabulary_rows, row_shards(len(wte)))
    return out


# Attention over the cache is split by heads once a layer's keys (B·nh·T_k·hs elements) are large enough
# for a second thread to pay off: MIN_PARALLEL_SIZE while the decode loop's panels keep the pool's threads
# awake, COLD_POOL_SIZE otherwise -- a pool thread that sleeps between steps takes a few hundred
# microseconds to wake on this VM.  Measured (session 10, 2 threads): the demo's 2x96 policy sampling 40
# tokens for 64 prompts took 86-91 ms with its heads split, 73-77 ms in one thread; GPT-2 124M at batch 8
# (panels) 60.1 ms per token split against 61.7 in one thread.
COLD_POOL_SIZE = 1 << 20


def attention_by_heads(q, keys, values, bias, pool_awake=False):
    """:func:`attention_decode` with the heads split across threads once the cache is large enough for
    a thread to pay off (``MIN_PARALLEL_SIZE`` elements of keys if ``pool_awake``, else
    ``COLD_POOL_SIZE``); y (B, nh, hs)."""
    if keys.size < (MIN_PARALLEL_SIZE if pool_awake else COLD_POOL_SIZE):
        return attention_decode(q, keys, values, bias)
    y = np.empty_like(q)

    def heads(_, shard):
        y[:, shard] = attention_decode(q[:, shard], keys[:, shard], values[:, shard], bias)

    map_shards(heads, row_shards(q.shape[1]))
    return y


def decode_step_reference(model, tokens, attention_mask):
    """Textbook twin of :func:`decode_step`: the final hidden state (B, C) of the last position of
    ``tokens`` (B, T), from the whole forward over the sequence so far (no cache, nothing folded).

    :func:`decode_step` computes the same row from the cached keys and values of positions 0..T−2,
    for the work of one position instead of T.  ``attention_mask`` (B, T): 0 for left padding.
    """
    B, T = tokens.shape
    positions, bias = positions_and_bias(attention_mask, B, T, model.config.dtype)
    hidden = np.empty((B, T, model.config.n_embd), dtype=model.config.dtype)
    model.serial_forward(tokens, positions, bias, hidden)
    return hidden[:, -1]


def decode_step(model, token, position, bias, kv_caches, start):
    """The final hidden state (B, C) of one new token per row, at cache position ``start``.

    ``GPT.block_forward`` specialised to one position: rows are (B, C), the heads need no transpose
    ((B, 3C) -> (B, 3, nh, hs) is a view), attention is :func:`attention_decode` (its heads split across
    threads, :func:`attention_by_heads`), the products split the weights' columns across threads where
    that pays off (:func:`step_in_panels`, :func:`decode_linear`), and nothing is kept for backward.
    The new keys and values are written into ``kv_caches``.  Textbook twin: :func:`decode_step_reference`.
    """
    p = model.params
    B, nh, hs = len(token), model.config.n_head, model.config.head_size
    panels = step_in_panels(B, model)  # the products' panels keep the pool's threads awake
    x = model.embed(token, position)  # (B, C)
    for layer, (keys, values) in enumerate(kv_caches):
        prefix = f"transformer.h.{layer}."
        ln1, _, _ = layernorm_forward(x, p[prefix + "ln_1.weight"], p[prefix + "ln_1.bias"])
        qkv = decode_linear(ln1, p[prefix + "attn.c_attn.weight"], p[prefix + "attn.c_attn.bias"],
                            panels)  # (B, 3C)
        qkv = qkv.reshape(B, 3, nh, hs)  # queries, keys, values: (B, nh, hs) each
        keys[:, :, start] = qkv[:, 1]
        values[:, :, start] = qkv[:, 2]
        y = attention_by_heads(qkv[:, 0], keys[:, :, :start + 1], values[:, :, :start + 1], bias, panels)
        a = decode_linear(y.reshape(B, -1), p[prefix + "attn.c_proj.weight"],  # (B, nh, hs) -> (B, C)
                          p[prefix + "attn.c_proj.bias"], panels)
        a += x  # a = x + Attn(LN₁(x))
        ln2, _, _ = layernorm_forward(a, p[prefix + "ln_2.weight"], p[prefix + "ln_2.bias"])
        fc = decode_linear(ln2, p[prefix + "mlp.c_fc.weight"], p[prefix + "mlp.c_fc.bias"], panels)  # (B, 4C)
        x = decode_linear(gelu_forward(fc)[0], p[prefix + "mlp.c_proj.weight"], p[prefix + "mlp.c_proj.bias"],
                          panels)
        x += a  # h' = a + MLP(LN₂(a))
    hidden, _, _ = layernorm_forward(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
    return hidden

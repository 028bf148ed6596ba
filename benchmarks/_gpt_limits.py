"""The work of ``bench_gpt.py``'s workloads (FLOPs, bytes a decode step reads) and this machine's limits
for it, measured at the benchmark's own shapes: sgemm GFLOP/s, the streaming-read bandwidth of every
thread, and the rate at which a product of a decode step's few rows streams a weight (``--limits``).
See ``bench_gpt.py``'s docstring for the FLOP model."""
import time

import numpy as np
from _pairing import quartiles

from minippo.nn.generation import lm_head_by_rows
from minippo.parallel import get_num_threads, map_shards, row_shards

PROMPT_LEN = 16


def matmul_params(cfg):
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    return 12 * L * C * C + V * C


def train_flops(cfg, B, T):
    L, C = cfg["n_layer"], cfg["n_embd"]
    return B * T * (6 * matmul_params(cfg) + 12 * L * T * C)


def generation_flops(cfg, B, G):
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    P = PROMPT_LEN
    context = P * P + sum(range(P + 1, P + G))  # keys attended, summed over trunk positions
    return B * ((P + G - 1) * 24 * L * C * C + 4 * L * C * context + G * 2 * V * C)


def decode_step_bytes(cfg, B, G):
    """Bytes one decode step must read, on average over the G steps: every float32 weight of the
    products (blocks and the tied LM head) and the keys and values cached so far."""
    L, C = cfg["n_layer"], cfg["n_embd"]
    mean_context = PROMPT_LEN + (G - 1) / 2
    return 4 * (matmul_params(cfg) + 2 * L * B * mean_context * C)


def best_time(fn, repeats=5):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def sgemm_gflops(cfg, B, T):
    """GFLOP/s of float32 matrix products at a train step's shapes (all BLAS threads): the block's
    four products and the LM head, forward shapes, best of 5."""
    C, V, N = cfg["n_embd"], cfg["vocab_size"], B * T
    rng = np.random.default_rng(0)
    flops, seconds = 0, 0.0
    for k, n in ((C, 3 * C), (C, C), (C, 4 * C), (4 * C, C), (C, V)):
        a = rng.standard_normal((N, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((N, n), dtype=np.float32)
        seconds += best_time(lambda: np.matmul(a, b, out=out))
        flops += 2 * N * k * n
    return flops / seconds / 1e9


def read_bandwidth(megabytes=512):
    """Bytes per second of a streaming read on every thread: each thread sums its rows of a float32
    array (a one-thread matrix-vector product), best of 5."""
    array = np.ones((megabytes * 256, 1024), dtype=np.float32)  # megabytes · 2^20 bytes
    ones = np.ones(1024, dtype=np.float32)
    shards = row_shards(len(array))
    seconds = best_time(lambda: map_shards(lambda _, rows: array[rows] @ ones, shards))
    return array.nbytes / seconds


def product_bandwidth(cfg, B, torch=None):
    """Bytes per second at which a product of B rows with the LM head's (V, C) float32 weight streams the
    weight, best of 5: minippo's way (``lm_head_by_rows``: vocabulary rows split across threads, in
    panels) and, if ``torch`` is given, ``torch.matmul`` with its own threads.  A decode step's products
    cannot stream the weights faster than their kernels do: at a few rows that, not memory, can bound it."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((cfg["vocab_size"], cfg["n_embd"]), dtype=np.float32)
    rows = rng.standard_normal((B, cfg["n_embd"]), dtype=np.float32)
    rates = {"minippo": weight.nbytes / best_time(lambda: lm_head_by_rows(weight, rows))}
    if torch is not None:
        weight_t, rows_t = torch.from_numpy(weight), torch.from_numpy(rows)
        rates["torch"] = weight.nbytes / best_time(lambda: torch.matmul(rows_t, weight_t.T))
    return rates


def print_limits(cfg, train_shapes, generate_shapes, torch=None):
    """Print the limits; returns the measured streaming-read bandwidth (bytes/s)."""
    print("   this machine's limits (--limits):")
    for B, T in train_shapes:
        gflops = sgemm_gflops(cfg, B, T)
        print(f"     train B {B} T {T}: sgemm {gflops:.0f} GFLOP/s at the step's shapes -> "
              f">= {train_flops(cfg, B, T) / gflops / 1e9 * 1e3:.0f} ms per step")
    bandwidth = read_bandwidth()
    print(f"     streaming read on {get_num_threads()} threads: {bandwidth / 1e9:.1f} GB/s")
    for B, G in generate_shapes:
        step = decode_step_bytes(cfg, B, G)
        print(f"     decode batch {B}: {step / 1e6:.0f} MB per step (weights + mean KV cache) -> "
              f">= {step / bandwidth * 1e3:.1f} ms per step, {G * step / bandwidth * 1e3:.0f} ms per call")
        rates = product_bandwidth(cfg, B, torch)
        print(f"       a ({cfg['vocab_size']}, {cfg['n_embd']}) weight times {B} rows streams "
              + ", ".join(f"{name} {rate / 1e9:.1f} GB/s" for name, rate in rates.items())
              + f" -> >= {step / max(rates.values()) * 1e3:.1f} ms per step at the faster")
    return bandwidth


def print_decode_limit(times, cfg, B, G, bandwidth):
    """Each implementation's time per new token (call time / G, prefill included) against the
    bandwidth limit of a decode step: median [quartiles] over the repeats, and their ratio to it."""
    limit = decode_step_bytes(cfg, B, G) / bandwidth
    print(f"  per new token against the bandwidth limit of {limit * 1e3:.1f} ms per step (call time / {G}):")
    for name, seconds in times.items():
        lower, median, upper = (value / G for value in quartiles(seconds))
        print(f"    {name:<14} {median * 1e3:7.1f} ms [{lower * 1e3:.1f}-{upper * 1e3:.1f}] "
              f"= {median / limit:.2f}x the limit")

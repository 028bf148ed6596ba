"""The work of ``bench_gpt.py``'s workloads (FLOPs, bytes a decode step reads) and this machine's limits
for it, measured at the benchmark's own shapes: sgemm GFLOP/s, the streaming-read bandwidth of every
thread, and the rate at which a product of a decode step's few rows streams a weight (``--limits``).
See ``bench_gpt.py``'s docstring for the FLOP model."""
import time

import numpy as np
from _pairing import quartiles

from minippo.nn.generation import decode_lm_head, panels_pay_off
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


def step_products(cfg, B, T):
    """Every matrix product of a train step with its own shape: ``(m, k, n, a_transposed, b_transposed,
    count)`` for (m, k) @ (k, n) run ``count`` times per step.  Each linear layer of N = B·T rows makes
    three: forward x W, dx = dy Wᵀ (W read transposed) and dW = xᵀ dy (x read transposed); the tied
    LM head makes h Eᵀ, dz E and dzᵀ h."""
    C, V, L, N = cfg["n_embd"], cfg["vocab_size"], cfg["n_layer"], B * T
    products = []
    for k, n, count in ((C, 3 * C, L), (C, C, L), (C, 4 * C, L), (4 * C, C, L)):
        products += [(N, k, n, False, False, count), (N, n, k, False, True, count), (k, N, n, True, False, count)]
    return products + [(N, C, V, False, True, 1), (N, V, C, False, False, 1), (V, N, C, True, False, 1)]


def product_seconds(products, matmul, operands):
    """Best-of-3 seconds of each product with ``matmul(a, b)`` on ``operands(m, k, n, a_t, b_t)``."""
    seconds = []
    for m, k, n, a_t, b_t, _ in products:
        a, b = operands(m, k, n, a_t, b_t)
        seconds.append(best_time(lambda: matmul(a, b), repeats=3))
    return seconds


def numpy_operands(m, k, n, a_transposed, b_transposed):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if a_transposed else (m, k), dtype=np.float32)
    b = rng.standard_normal((n, k) if b_transposed else (k, n), dtype=np.float32)
    return (a.T if a_transposed else a), (b.T if b_transposed else b)


def sgemm_rates(cfg, B, T, torch=None):
    """GFLOP/s of float32 matrix products at a train step's shapes (:func:`step_products`, each weighted
    by how often the step runs it), all threads: ``{library: GFLOP/s}`` for NumPy's BLAS, torch's (when
    ``torch`` is given) and "best of both", which takes the faster library shape by shape."""
    products = step_products(cfg, B, T)
    flops = [2 * m * k * n * count for m, k, n, _, _, count in products]
    seconds = {"numpy": product_seconds(products, np.matmul, numpy_operands)}
    if torch is not None:
        time.sleep(0.2)  # let OpenBLAS's spinning workers park before torch's threads start
        seconds["torch"] = product_seconds(products, torch.matmul, lambda *shape: tuple(
            torch.from_numpy(x) for x in numpy_operands(*shape)))  # the same strides: views of the arrays
    seconds["best of both"] = [min(each) for each in zip(*seconds.values())]
    return {library: sum(flops) / sum(s * count for s, (*_, count) in zip(times, products)) / 1e9
            for library, times in seconds.items()}


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
    weight, best of 5: minippo's way (``decode_lm_head``: vocabulary rows split across threads in panels,
    or one BLAS call where that is faster) and, if ``torch`` is given, ``torch.matmul`` with its own threads.
    A decode step's products cannot stream the weights faster than their kernels do: at a few rows that,
    not memory, can bound it."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((cfg["vocab_size"], cfg["n_embd"]), dtype=np.float32)
    rows = rng.standard_normal((B, cfg["n_embd"]), dtype=np.float32)
    panels = panels_pay_off(len(rows), weight)
    rates = {"minippo": weight.nbytes / best_time(lambda: decode_lm_head(weight, rows, panels))}
    if torch is not None:
        weight_t, rows_t = torch.from_numpy(weight), torch.from_numpy(rows)
        rates["torch"] = weight.nbytes / best_time(lambda: torch.matmul(rows_t, weight_t.T))
    return rates


def print_limits(cfg, train_shapes, generate_shapes, torch=None):
    """Print the limits; return ``(step_limits, bandwidth)``: {(B, T): the fewest seconds a train step needs
    at the best sgemm rate}, and the streaming-read bandwidth (bytes/s; None without generate shapes)."""
    print("   this machine's limits (--limits):")
    step_limits = {}
    for B, T in train_shapes:
        rates = sgemm_rates(cfg, B, T, torch)
        best = max(rates.values())
        step_limits[(B, T)] = train_flops(cfg, B, T) / best / 1e9
        print(f"     train B {B} T {T}: sgemm at the step's shapes " + ", ".join(
            f"{library} {rate:.0f}" for library, rate in rates.items())
            + f" GFLOP/s -> >= {step_limits[(B, T)] * 1e3:.0f} ms per step")
    if not generate_shapes:
        return step_limits, None
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
    return step_limits, bandwidth


def print_decode_limit(times, cfg, B, G, bandwidth):
    """Each implementation's time per new token (call time / G, prefill included) against the
    bandwidth limit of a decode step: median [quartiles] over the repeats, and their ratio to it."""
    limit = decode_step_bytes(cfg, B, G) / bandwidth
    print(f"  per new token against the bandwidth limit of {limit * 1e3:.1f} ms per step (call time / {G}):")
    for name, seconds in times.items():
        lower, median, upper = (value / G for value in quartiles(seconds))
        print(f"    {name:<14} {median * 1e3:7.1f} ms [{lower * 1e3:.1f}-{upper * 1e3:.1f}] "
              f"= {median / limit:.2f}x the limit")

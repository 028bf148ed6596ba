"""Throughput of minippo's NumPy GPT against the same GPT-2 in eager PyTorch (CPU, float32).

Run (from the repository root)::

    python benchmarks/bench_gpt.py                       # configs S and M, 5 repeats, all cores
    python benchmarks/bench_gpt.py --configs S --repeats 9 --threads 2
    python benchmarks/bench_gpt.py --no-torch            # minippo only (also automatic without torch)
    python benchmarks/bench_gpt.py --configs gpt2 --threads 2 --repeats 5 --calls 1 --limits --memory
    python benchmarks/bench_gpt.py --configs gpt2-medium --skip generate --peers hf --repeats 3 --calls 1

Configs S and M are toy shapes; ``gpt2`` (124M) and ``gpt2-medium`` (355M) are GPT-2's, with its
vocabulary of 50,257: their train step runs at B 4, T 256 (and B 8, T 512 for ``gpt2``), their
generation samples 128 tokens after a 16-token prompt at batch 8 and batch 1 (``--train-shapes``,
``--gen-batches`` and ``--new-tokens`` change them).  There the peers are Hugging Face
``GPT2LMHeadModel`` (its default attention; ``generate`` with its KV cache) and the lean PyTorch
KV-cache loop below ("torch-sdpa"), all loaded from minippo's random initial weights.
``--limits`` measures this machine's limits with the benchmark's own shapes (sgemm GFLOP/s of the
train step's products; streaming-read bandwidth of every thread) and prints the time they allow;
``--memory`` runs each library alone in its own process per workload and reports its peak resident
set (VmHWM).

Two workloads per config, both float32:

* **train step** -- forward, cross-entropy (minippo: ``GPT.loss``, the LM head and cross-entropy
  fused over row chunks), backward and an AdamW step with weight decay 0.1 on matrices (biases,
  LayerNorm gains and embeddings not decayed) on a (B, T) batch of random tokens;
  tokens/s = B·T / step time.
* **generation** -- a 16-token prompt per row, then sampling (temperature 1.0, no top-k/top-p, no EOS)
  up to T tokens in total with a KV cache; tokens/s = B·(T − 16) new tokens / call time (prefill
  included).  Log-probabilities of the sampled tokens are computed by both implementations.

PyTorch peers (only when ``import torch`` works and ``--no-torch`` is not given): a compact GPT-2 with
the same architecture -- pre-LN blocks, fused QKV ``Linear(C, 3C)``, tanh GELU, LM head tied to the
token embedding -- in eager mode with ``torch.set_num_threads`` equal to the OpenBLAS thread count,
trained with ``torch.optim.AdamW`` (default implementation, same parameter groups).  Attention is
run two ways: plain ``softmax(QKᵀ/√d + mask) V`` with matmuls ("torch-matmul") and
``F.scaled_dot_product_attention`` ("torch-sdpa").  Generation uses a lean loop under
``torch.inference_mode()`` with a preallocated KV cache and ``torch.multinomial``.  The PyTorch model
is loaded with minippo's initial weights and the two initial losses are printed as a parity check.

Timing: after warm-up, each repeat visits every implementation in turn, interleaved.  On switching
it pauses (so that spinning BLAS/OpenMP worker threads of the other library go to sleep), runs one
untimed call (the first call after an idle pause is 5-15% slower for every implementation: cold
caches, sleeping threads), then times ``--calls`` calls back to back, as a training or sampling
loop runs them, and records their mean.  The median over repeats is reported, and the min in
brackets.  "vs minippo" is the speed ratio minippo tokens/s ÷ that implementation's tokens/s (> 1
means minippo is faster).  On a shared machine whole repeats run 10-15% faster or slower, so the
closing summary pairs the implementations within each repeat (one ratio per repeat) and shows the
median and quartiles of those ratios; a target counts as met only when the lower quartile meets it.

FLOP model (nominal, identical for every implementation; biases, LayerNorm, GELU, softmax and the
optimizer are not counted).  With L layers, width C, vocabulary V, and the matmul parameter count
N = 12·L·C² + V·C (the block weights plus the tied LM head; position/token lookups are free):

* train step:  B·T·(6·N + 12·L·T·C)  -- 6 FLOPs per matmul weight per token for forward + backward
  (2 + 4), plus attention QKᵀ and AV over the full T×T score matrix (4·L·T·C per token forward,
  ×3 for forward + backward; the causal half is not discounted, as neither implementation skips it).
* generation:  B·[(P + G − 1)·24·L·C² + 4·L·C·(P² + Σ_{t=P+1}^{P+G−1} t) + G·2·V·C]  with prompt
  P = 16 and G = T − P new tokens: the trunk runs on the P prompt positions (full P×P attention) and
  then on G − 1 single new positions attending to t cached keys, and the LM head runs G times on the
  last position only.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

from _options import non_negative_int, positive_int

# train: (B, T) batches; generate: (B, new tokens after the 16-token prompt)
CONFIGS = {
    "S": dict(vocab_size=512, n_embd=128, n_layer=4, n_head=4, train=[(16, 128)], generate=[(16, 112)]),
    "M": dict(vocab_size=2048, n_embd=256, n_layer=6, n_head=8, train=[(8, 256)], generate=[(8, 240)]),
    "gpt2": dict(vocab_size=50257, n_embd=768, n_layer=12, n_head=12, train=[(4, 256), (8, 512)],
                 generate=[(8, 128), (1, 128)]),
    "gpt2-medium": dict(vocab_size=50257, n_embd=1024, n_layer=24, n_head=16, train=[(4, 256)],
                        generate=[(8, 128), (1, 128)]),
}
GPT2_SIZES = ("gpt2", "gpt2-medium")
PROMPT_LEN = 16
LR, BETAS, EPS, WEIGHT_DECAY = 3e-4, (0.9, 0.95), 1e-8, 0.1
TARGETS = {"train": 1.2, "generate": 1.5}  # minippo speed / PyTorch speed, from the issue
SWITCH_PAUSE = 0.15  # s: OpenBLAS workers spin ~2^28 cycles before sleeping; let them park


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["S", "M"], choices=sorted(CONFIGS))
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed runs per implementation")
    parser.add_argument("--calls", type=positive_int, default=3,
                        help="calls timed back to back per repeat (mean)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="threads for minippo (data-parallel shards), NumPy's BLAS and torch "
                             "(default: OPENBLAS_NUM_THREADS or the cores this process may use)")
    parser.add_argument("--no-torch", action="store_true", help="benchmark minippo only")
    parser.add_argument("--skip", nargs="*", default=[], choices=["train", "generate"],
                        help="workloads to skip")
    parser.add_argument("--peers", nargs="+", choices=["torch-matmul", "torch-sdpa", "hf"], default=None,
                        help="PyTorch peers (default: torch-matmul and torch-sdpa for S and M; hf and "
                             "torch-sdpa for the GPT-2 sizes, torch-sdpa only in generation)")
    parser.add_argument("--train-shapes", nargs="+", type=batch_shape, default=None, metavar="BxT",
                        help="train batches, e.g. 4x256 (default: the config's)")
    parser.add_argument("--gen-batches", nargs="+", type=positive_int, default=None,
                        help="generation batch sizes (default: the config's)")
    parser.add_argument("--new-tokens", type=positive_int, default=None,
                        help="tokens generated after the prompt (default: the config's)")
    parser.add_argument("--limits", action="store_true",
                        help="measure sgemm GFLOP/s and memory bandwidth here, and the times they allow")
    parser.add_argument("--memory", action="store_true",
                        help="peak resident memory of each library alone, one process per workload")
    parser.add_argument("--peak-of", nargs=3, metavar=("LIBRARY", "WORKLOAD", "SHAPE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def batch_shape(text):
    """'4x256' -> (4, 256)."""
    try:
        B, T = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BxT such as 4x256, got {text!r}") from None
    if B < 1 or T < 1:
        raise argparse.ArgumentTypeError(f"expected positive B and T, got {text!r}")
    return B, T


def default_threads():
    """OPENBLAS_NUM_THREADS if it is a positive integer, else the cores this process may use -- the
    default of minippo.parallel, worked out here because minippo cannot be imported yet (it imports
    NumPy, which must see the BLAS setting below)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    setting = os.environ.get("OPENBLAS_NUM_THREADS")
    if setting is None:
        return cores
    try:
        return positive_int(setting)
    except argparse.ArgumentTypeError:
        print(f"note: OPENBLAS_NUM_THREADS={setting!r} is not a positive integer; using {cores} threads")
        return cores


ARGS = parse_args()
if ARGS.threads is None:
    ARGS.threads = default_threads()
# OpenBLAS reads these once, when NumPy loads it: set them before the first numpy import.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402

from minippo.blas import get_blas_threads  # noqa: E402
from minippo.memory import keep_freed_memory  # noqa: E402
from minippo.nn import GPT, AdamW, GPTConfig, cross_entropy  # noqa: E402
from minippo.parallel import get_num_threads, map_shards, row_shards, set_num_threads  # noqa: E402

torch = None
if not ARGS.no_torch:
    try:
        import torch  # noqa: E402
        import torch.nn.functional as F  # noqa: E402
    except ImportError:
        torch = None



# ------------------------------------------------------------------------------------------------
# FLOP model (see the module docstring)
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# minippo
# ------------------------------------------------------------------------------------------------
def gpt_config(cfg, block_size):
    return GPTConfig(vocab_size=cfg["vocab_size"], block_size=block_size, n_layer=cfg["n_layer"],
                     n_head=cfg["n_head"], n_embd=cfg["n_embd"], dtype=np.float32)


class MinippoRunner:
    name = "minippo"

    def __init__(self, cfg, block_size, initial_params):
        self.model = GPT(gpt_config(cfg, block_size), params=initial_params)
        self.optimizer = None  # made at the first train step: generation alone holds no gradients
        self.rng = np.random.default_rng(1)

    def loss(self, x, y):
        self.model.forward(x, compute_logits=False)  # the hidden state alone, then the textbook path
        return cross_entropy(self.model.forward(x), y)[0]

    def train_step(self, x, y):
        if self.optimizer is None:
            self.optimizer = AdamW(self.model.params, self.model.grads, lr=LR, betas=BETAS, eps=EPS,
                                   weight_decay=WEIGHT_DECAY)
        model = self.model
        model.zero_grad()
        loss = model.loss(x, y)  # LM head and cross-entropy fused over chunks of rows
        model.backward()
        self.optimizer.step()
        return loss

    def generate(self, prompt, max_new):
        return self.model.generate(prompt, max_new, temperature=1.0, rng=self.rng).tokens


# ------------------------------------------------------------------------------------------------
# PyTorch peers: a compact GPT-2 with the same architecture, and Hugging Face's GPT2LMHeadModel
# ------------------------------------------------------------------------------------------------
def build_torch_gpt(cfg, block_size, sdpa):
    nn = torch.nn
    V, C, L, nh, T = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"], block_size
    hs = C // nh

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C)
            self.c_attn = nn.Linear(C, 3 * C)
            self.attn_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)
            self.register_buffer("causal", torch.ones(T, T, dtype=torch.bool).triu(1), persistent=False)

        def forward(self, x, kv=None, start=0):
            B, Tq, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).view(B, Tq, 3, nh, hs).permute(2, 0, 3, 1, 4)
            if kv is not None:  # write the new keys/values, attend over every cached position
                keys, values = kv
                keys[:, :, start:start + Tq] = k
                values[:, :, start:start + Tq] = v
                k, v = keys[:, :, :start + Tq], values[:, :, :start + Tq]
            causal = Tq > 1  # a single decoding query may see every cached key
            if sdpa:
                y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            else:
                att = (q @ k.transpose(-2, -1)) * (1.0 / hs ** 0.5)
                if causal:
                    att = att.masked_fill(self.causal[:Tq, :Tq], float("-inf"))
                y = att.softmax(dim=-1) @ v
            x = x + self.attn_proj(y.transpose(1, 2).reshape(B, Tq, C))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(T, C)
            self.h = nn.ModuleList(Block() for _ in range(L))
            self.ln_f = nn.LayerNorm(C)

        def hidden(self, idx, start=0, kv_caches=None):
            pos = torch.arange(start, start + idx.shape[1])
            x = self.wte(idx) + self.wpe(pos)
            for layer, block in enumerate(self.h):
                x = block(x, None if kv_caches is None else kv_caches[layer], start)
            return self.ln_f(x)

        def forward(self, idx):
            return self.hidden(idx) @ self.wte.weight.T  # tied LM head

    return TorchGPT()


def load_minippo_weights(model, params):
    """Copy minippo's parameters (HF GPT-2 names, Conv1D (in, out) weights) into the torch model."""
    def put(tensor, array, transpose=False):
        tensor.copy_(torch.from_numpy(np.ascontiguousarray(array.T if transpose else array)))

    with torch.no_grad():
        put(model.wte.weight, params["transformer.wte.weight"])
        put(model.wpe.weight, params["transformer.wpe.weight"])
        for i, block in enumerate(model.h):
            pre = f"transformer.h.{i}."
            for module, name, linear in ((block.ln_1, "ln_1", False), (block.c_attn, "attn.c_attn", True),
                                         (block.attn_proj, "attn.c_proj", True), (block.ln_2, "ln_2", False),
                                         (block.c_fc, "mlp.c_fc", True), (block.mlp_proj, "mlp.c_proj", True)):
                put(module.weight, params[pre + name + ".weight"], transpose=linear)
                put(module.bias, params[pre + name + ".bias"])
        put(model.ln_f.weight, params["transformer.ln_f.weight"])
        put(model.ln_f.bias, params["transformer.ln_f.bias"])


def torch_adamw(named_parameters):
    """AdamW with minippo's parameter groups: matrices decayed, embeddings, biases and gains not."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        embedding = "wte" in name or "wpe" in name
        (decay if param.ndim >= 2 and not embedding else no_decay).append(param)
    return torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                              {"params": no_decay, "weight_decay": 0.0}], lr=LR, betas=BETAS, eps=EPS)


class TorchRunner:
    def __init__(self, cfg, block_size, initial_params, sdpa):
        self.name = "torch-sdpa" if sdpa else "torch-matmul"
        self.cfg = cfg
        self.model = build_torch_gpt(cfg, block_size, sdpa)
        load_minippo_weights(self.model, initial_params)
        self.optimizer = None
        self.generator = torch.Generator().manual_seed(1)

    def logits(self, x):
        return self.model(x)

    def loss(self, x, y):
        with torch.no_grad():
            logits = self.logits(torch.from_numpy(x))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1)).item()

    def train_step(self, x, y):
        if self.optimizer is None:
            self.optimizer = torch_adamw(self.model.named_parameters())
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.logits(torch.from_numpy(x))
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), torch.from_numpy(y).view(-1))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def generate(self, prompt, max_new, temperature=1.0):
        with torch.inference_mode():
            return self._generate(torch.from_numpy(prompt), max_new, temperature)

    def _generate(self, prompt, max_new, temperature):
        model, cfg = self.model, self.cfg
        B, P = prompt.shape
        total, nh = P + max_new, cfg["n_head"]
        hs = cfg["n_embd"] // nh
        kv_caches = [(torch.empty(B, nh, total, hs), torch.empty(B, nh, total, hs)) for _ in model.h]
        tokens = torch.empty(B, total, dtype=torch.long)
        tokens[:, :P] = prompt
        logprobs = torch.empty(B, max_new)
        wte = model.wte.weight
        hidden = model.hidden(prompt, 0, kv_caches)
        for step in range(max_new):
            log_probs = torch.log_softmax((hidden[:, -1] @ wte.T) / temperature, dim=-1)  # (B, V)
            token = torch.multinomial(log_probs.exp(), 1, generator=self.generator)  # (B, 1)
            tokens[:, P + step] = token[:, 0]
            logprobs[:, step] = log_probs.gather(1, token)[:, 0]
            if step == max_new - 1:
                break
            hidden = model.hidden(token, P + step, kv_caches)
        return tokens


class HFRunner(TorchRunner):
    """Hugging Face ``GPT2LMHeadModel`` (default attention), trained as a user would, sampling with
    ``generate`` (its KV cache); dropout off."""

    def __init__(self, cfg, block_size, initial_params):
        import transformers

        transformers.logging.set_verbosity_error()
        self.name, self.cfg = "hf", cfg
        config = transformers.GPT2Config(
            vocab_size=cfg["vocab_size"], n_positions=block_size, n_embd=cfg["n_embd"], n_layer=cfg["n_layer"],
            n_head=cfg["n_head"], resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.model = transformers.GPT2LMHeadModel(config)
        state = {name: torch.from_numpy(value) for name, value in initial_params.items()}
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        assert not unexpected and all(name == "lm_head.weight" or ".attn.bias" in name for name in missing)
        self.model.tie_weights()
        self.optimizer = None
        torch.manual_seed(1)

    def logits(self, x):
        return self.model(x).logits

    def generate(self, prompt, max_new, temperature=1.0):
        prompt = torch.from_numpy(prompt)
        return self.model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                   temperature=temperature, top_k=0, max_new_tokens=max_new,
                                   min_new_tokens=max_new, pad_token_id=0)


def make_runners(key, cfg, block_size, workload, initial_params):
    runners = [MinippoRunner(cfg, block_size, initial_params)]
    if torch is None:
        return runners
    peers = ARGS.peers
    if peers is None:
        peers = ["torch-matmul", "torch-sdpa"] if key not in GPT2_SIZES else (
            ["hf"] if workload == "train" else ["hf", "torch-sdpa"])
    for peer in peers:
        runners.append(HFRunner(cfg, block_size, initial_params) if peer == "hf"
                       else TorchRunner(cfg, block_size, initial_params, sdpa=peer == "torch-sdpa"))
    return runners


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def measure(runners, method, args, repeats, warmup, calls):
    """Interleaved timing: {runner name: [seconds per call]}."""
    times = {runner.name: [] for runner in runners}
    for _ in range(warmup):
        for runner in runners:
            getattr(runner, method)(*args)
    for _ in range(repeats):
        for runner in runners:
            time.sleep(SWITCH_PAUSE)
            fn = getattr(runner, method)
            fn(*args)  # back from the pause: not timed
            start = time.perf_counter()
            for _ in range(calls):
                fn(*args)
            times[runner.name].append((time.perf_counter() - start) / calls)
    return times


def report(title, times, tokens, flops):
    print(title)
    print(f"  {'implementation':<14} {'ms/call':>10} {'(min)':>9} {'tokens/s':>11} {'GFLOP/s':>8} "
          f"{'vs minippo':>11}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["minippo"]
    for name, t in times.items():
        median = medians[name]
        ratio = "" if name == "minippo" else f"{median / base:10.2f}x"
        print(f"  {name:<14} {median * 1e3:10.1f} {min(t) * 1e3:9.1f} {tokens / median:11.0f} "
              f"{flops / median / 1e9:8.1f} {ratio:>11}")


# ------------------------------------------------------------------------------------------------
# this machine's limits, measured at the benchmark's shapes
# ------------------------------------------------------------------------------------------------
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


def print_limits(cfg):
    print("   this machine's limits (--limits):")
    for B, T in train_shapes(cfg):
        gflops = sgemm_gflops(cfg, B, T)
        print(f"     train B {B} T {T}: sgemm {gflops:.0f} GFLOP/s at the step's shapes -> "
              f">= {train_flops(cfg, B, T) / gflops / 1e9 * 1e3:.0f} ms per step")
    bandwidth = read_bandwidth()
    print(f"     streaming read on {get_num_threads()} threads: {bandwidth / 1e9:.1f} GB/s")
    for B, G in generate_shapes(cfg):
        step = decode_step_bytes(cfg, B, G)
        print(f"     decode batch {B}: {step / 1e6:.0f} MB per step (weights + mean KV cache) -> "
              f">= {step / bandwidth * 1e3:.1f} ms per step, {G * step / bandwidth * 1e3:.0f} ms per call")


# ------------------------------------------------------------------------------------------------
# peak memory: each library alone in a process of its own
# ------------------------------------------------------------------------------------------------
def peak_memory_child(key, library, workload, shape):
    """Run one workload of one library twice and print the process's peak resident set (MB)."""
    cfg = CONFIGS[key]
    B, length = shape
    block_size = max(block_sizes(cfg))
    initial_params = GPT(gpt_config(cfg, block_size), seed=0).params
    runner = (MinippoRunner(cfg, block_size, initial_params) if library == "minippo"
              else HFRunner(cfg, block_size, initial_params))
    del initial_params  # minippo uses these arrays as its parameters; HF copied them
    x, y, prompt = workload_data(cfg, B, length)
    for _ in range(2):
        runner.train_step(x, y) if workload == "train" else runner.generate(prompt, length)
    with open("/proc/self/status") as status:  # VmHWM: this process's peak (ru_maxrss survives exec)
        peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(f"PEAK {peak_kb / 1024:.0f}")


def print_peak_memory(key):
    cfg = CONFIGS[key]
    print("   peak resident memory, each library alone in its own process (--memory):")
    for workload, shapes in (("train", train_shapes(cfg)), ("generate", generate_shapes(cfg))):
        if workload in ARGS.skip:
            continue
        for B, length in shapes:
            peaks = []
            for library in ("minippo", "hf") if torch is not None else ("minippo",):
                command = [sys.executable, os.path.abspath(__file__), "--configs", key, "--threads",
                           str(ARGS.threads), "--peak-of", library, workload, f"{B}x{length}"]
                if library == "minippo":
                    command.append("--no-torch")
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                peaks.append(f"{library} {output.split('PEAK')[-1].strip()} MB")
            shape = f"B {B} T {length}" if workload == "train" else f"batch {B}, {length} new tokens"
            print(f"     {workload} {shape}: " + ", ".join(peaks))


# ------------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------------
def train_shapes(cfg):
    return ARGS.train_shapes or cfg["train"]


def generate_shapes(cfg):
    batches = ARGS.gen_batches or [B for B, _ in cfg["generate"]]
    new_tokens = ARGS.new_tokens or cfg["generate"][0][1]
    return [(B, new_tokens) for B in batches]


def block_sizes(cfg):
    return [T for _, T in train_shapes(cfg)] + [PROMPT_LEN + G for _, G in generate_shapes(cfg)]


def workload_data(cfg, B, length):
    """Random tokens: inputs and next-token targets (B, length) and a (B, 16) prompt."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg["vocab_size"], size=(B, length + 1))
    prompt = rng.integers(0, cfg["vocab_size"], size=(B, PROMPT_LEN))
    return tokens[:, :-1].copy(), tokens[:, 1:].copy(), prompt


def main():
    # as the minippo command line does; it applies to PyTorch in this process just the same
    print(f"glibc keeps freed memory (minippo.memory): {keep_freed_memory()}")
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
        torch.manual_seed(0)
    set_num_threads(ARGS.threads)
    if ARGS.peak_of:
        library, workload, shape = ARGS.peak_of
        peak_memory_child(ARGS.configs[0], library, workload, batch_shape(shape))
        return
    print(f"numpy {np.__version__}, OpenBLAS threads {get_blas_threads()} (requested {ARGS.threads}); "
          + (f"torch {torch.__version__}, threads {ARGS.threads}" if torch is not None
             else "torch: not used"))
    print(f"minippo data-parallel threads (minippo.parallel): {get_num_threads()}; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"repeats {ARGS.repeats} x {ARGS.calls} calls (median, min in brackets), warm-up {ARGS.warmup}; "
          "'vs minippo' = minippo tokens/s / that tokens/s")
    summary = []
    for key in ARGS.configs:
        cfg = CONFIGS[key]
        block_size = max(block_sizes(cfg))
        initial_params = GPT(gpt_config(cfg, block_size), seed=0).state_dict()
        print(f"\n== config {key}: vocab {cfg['vocab_size']}, n_embd {cfg['n_embd']}, {cfg['n_layer']} layers, "
              f"{cfg['n_head']} heads; {sum(v.size for v in initial_params.values()) / 1e6:.2f}M parameters")
        if ARGS.limits:
            print_limits(cfg)
        if ARGS.memory:
            print_peak_memory(key)
        for workload, shapes in (("train", train_shapes(cfg)), ("generate", generate_shapes(cfg))):
            if workload in ARGS.skip:
                continue
            runners = make_runners(key, cfg, block_size, workload, initial_params)
            for B, length in shapes:
                x, y, prompt = workload_data(cfg, B, length)
                if workload == "train":
                    if len(runners) > 1:
                        print("   parity (initial loss): " + ", ".join(f"{r.name} {r.loss(x, y):.6f}" for r in runners))
                    times = measure(runners, "train_step", (x, y), ARGS.repeats, ARGS.warmup, ARGS.calls)
                    n_tok, flops = B * length, train_flops(cfg, B, length)
                    report(f"-- train step (forward + cross-entropy + backward + AdamW), B {B} T {length}: "
                           f"{n_tok} tokens, {flops / 1e9:.2f} GFLOP", times, n_tok, flops)
                else:
                    times = measure(runners, "generate", (prompt, length), ARGS.repeats, ARGS.warmup,
                                    ARGS.calls)
                    n_tok, flops = B * length, generation_flops(cfg, B, length)
                    report(f"-- generation (prompt {PROMPT_LEN}, {length} new tokens x batch {B}, "
                           f"temperature 1.0, KV cache): {n_tok} new tokens, {flops / 1e9:.3f} GFLOP",
                           times, n_tok, flops)
                summary.append((f"{key} {workload} B{B} {'T' if workload == 'train' else 'new '}{length}",
                                workload, times))
            del runners
    if torch is not None and summary:
        targets = ", ".join(f"{workload} >= {target}x" for workload, target in TARGETS.items())
        print(f"\n== minippo speed relative to PyTorch (target: {targets}); load average {os.getloadavg()[0]:.1f}")
        print("   per repeat, both implementations run back to back, so each repeat gives one paired ratio;")
        print("   shown: median [lower quartile - upper quartile] of those ratios")
        for label, workload, times in summary:
            print(f"   {label:<28}: " + ", ".join(
                f"vs {name} {format_ratios(paired_ratios(times, name))}" for name in times if name != "minippo")
                + f"  -> {verdict(times, TARGETS[workload])}")


def paired_ratios(times, name):
    """minippo's speed relative to ``name`` in each repeat: that implementation's time / minippo's time."""
    return [other / mine for other, mine in zip(times[name], times["minippo"])]


def quartiles(values):
    """(lower quartile, median, upper quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    lower, median, upper = statistics.quantiles(values, n=4, method="inclusive")
    return lower, median, upper


def format_ratios(ratios):
    lower, median, upper = quartiles(ratios)
    return f"{median:.2f}x [{lower:.2f}-{upper:.2f}]"


def verdict(times, target):
    """'meets target' when even the lower quartile of the paired ratios against every PyTorch peer
    reaches the target, 'below target' when the median misses it, 'borderline' in between."""
    peers = [quartiles(paired_ratios(times, name)) for name in times if name != "minippo"]
    if min(lower for lower, _, _ in peers) >= target:
        return "meets target"
    if min(median for _, median, _ in peers) >= target:
        return "borderline (median meets it, lower quartile does not)"
    return "below target"


if __name__ == "__main__":
    main()

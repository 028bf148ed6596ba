"""Throughput of minippo's NumPy GPT against the same GPT-2 in eager PyTorch (CPU, float32).

Run (from the repository root)::

    python benchmarks/bench_gpt.py                       # configs S and M, 5 repeats, all cores
    python benchmarks/bench_gpt.py --configs S --repeats 9 --threads 2
    python benchmarks/bench_gpt.py --no-torch            # minippo only (also automatic without torch)

Two workloads per config, both float32:

* **train step** -- forward, fused cross-entropy, backward and an AdamW step with weight decay 0.1
  on matrices (biases, LayerNorm gains and embeddings not decayed) on a (B, T) batch of random tokens;
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
import time

from _options import non_negative_int, positive_int

CONFIGS = {
    "S": dict(vocab_size=512, n_embd=128, n_layer=4, n_head=4, T=128, B=16),
    "M": dict(vocab_size=2048, n_embd=256, n_layer=6, n_head=8, T=256, B=8),
}
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
    return parser.parse_args(argv)


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
from minippo.parallel import get_num_threads, set_num_threads  # noqa: E402

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


def train_flops(cfg):
    L, C, T, B = cfg["n_layer"], cfg["n_embd"], cfg["T"], cfg["B"]
    return B * T * (6 * matmul_params(cfg) + 12 * L * T * C)


def generation_flops(cfg):
    L, C, V, T, B = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"], cfg["T"], cfg["B"]
    P, G = PROMPT_LEN, T - PROMPT_LEN
    context = P * P + sum(range(P + 1, P + G))  # keys attended, summed over trunk positions
    return B * ((P + G - 1) * 24 * L * C * C + 4 * L * C * context + G * 2 * V * C)


# ------------------------------------------------------------------------------------------------
# minippo
# ------------------------------------------------------------------------------------------------
class MinippoRunner:
    name = "minippo"

    def __init__(self, cfg, data):
        config = GPTConfig(vocab_size=cfg["vocab_size"], block_size=cfg["T"], n_layer=cfg["n_layer"],
                           n_head=cfg["n_head"], n_embd=cfg["n_embd"], dtype=np.float32)
        self.model = GPT(config, seed=0)
        self.initial_params = self.model.state_dict()
        self.optimizer = AdamW(self.model.params, self.model.grads, lr=LR, betas=BETAS, eps=EPS,
                               weight_decay=WEIGHT_DECAY)
        self.x, self.y, self.prompt = data["x"], data["y"], data["prompt"]
        self.max_new = cfg["T"] - PROMPT_LEN
        self.rng = np.random.default_rng(1)

    def loss(self):
        logits = self.model.forward(self.x)
        return cross_entropy(logits, self.y)[0]

    def train_step(self):
        model = self.model
        model.zero_grad()
        logits = model.forward(self.x)
        loss, dlogits = cross_entropy(logits, self.y)
        model.backward(dlogits)
        self.optimizer.step()
        return loss

    def generate(self):
        out = self.model.generate(self.prompt, self.max_new, temperature=1.0, rng=self.rng)
        return out.tokens


# ------------------------------------------------------------------------------------------------
# PyTorch peer: a compact GPT-2 with the same architecture
# ------------------------------------------------------------------------------------------------
def build_torch_gpt(cfg, sdpa):
    nn = torch.nn
    V, C, L, nh, T = cfg["vocab_size"], cfg["n_embd"], cfg["n_layer"], cfg["n_head"], cfg["T"]
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


def load_minippo_weights(model, params, n_layer):
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


class TorchRunner:
    def __init__(self, cfg, data, sdpa, initial_params):
        self.name = "torch-sdpa" if sdpa else "torch-matmul"
        self.cfg = cfg
        self.model = build_torch_gpt(cfg, sdpa)
        load_minippo_weights(self.model, initial_params, cfg["n_layer"])
        decay = [p for n, p in self.model.named_parameters() if p.ndim >= 2 and not n.startswith(("wte", "wpe"))]
        no_decay = [p for n, p in self.model.named_parameters() if p.ndim < 2 or n.startswith(("wte", "wpe"))]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=LR, betas=BETAS, eps=EPS)
        self.x = torch.from_numpy(data["x"])
        self.y = torch.from_numpy(data["y"])
        self.prompt = torch.from_numpy(data["prompt"])
        self.max_new = cfg["T"] - PROMPT_LEN
        self.generator = torch.Generator().manual_seed(1)

    def loss(self):
        with torch.no_grad():
            logits = self.model(self.x)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), self.y.view(-1)).item()

    def train_step(self):
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(self.x)
        loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), self.y.view(-1))
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def generate(self, temperature=1.0):
        with torch.inference_mode():
            return self._generate(temperature)

    def _generate(self, temperature):
        model, cfg, prompt, max_new = self.model, self.cfg, self.prompt, self.max_new
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


# ------------------------------------------------------------------------------------------------
# timing
# ------------------------------------------------------------------------------------------------
def measure(runners, method, repeats, warmup, calls):
    """Interleaved timing: {runner name: [seconds per call]}."""
    times = {runner.name: [] for runner in runners}
    for _ in range(warmup):
        for runner in runners:
            getattr(runner, method)()
    for _ in range(repeats):
        for runner in runners:
            time.sleep(SWITCH_PAUSE)
            fn = getattr(runner, method)
            fn()  # back from the pause: not timed
            start = time.perf_counter()
            for _ in range(calls):
                fn()
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


def main():
    # as the minippo command line does; it applies to PyTorch in this process just the same
    print(f"glibc keeps freed memory (minippo.memory): {keep_freed_memory()}")
    print(f"numpy {np.__version__}, OpenBLAS threads {get_blas_threads()} (requested {ARGS.threads}); "
          + (f"torch {torch.__version__}, threads {ARGS.threads}" if torch is not None
             else "torch: not used"))
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
        torch.manual_seed(0)
    set_num_threads(ARGS.threads)
    print(f"minippo data-parallel threads (minippo.parallel): {get_num_threads()}")
    print(f"repeats {ARGS.repeats} x {ARGS.calls} calls (median, min in brackets), warm-up {ARGS.warmup}; "
          "'vs minippo' = minippo tokens/s / that tokens/s")
    summary = []
    for key in ARGS.configs:
        cfg = CONFIGS[key]
        rng = np.random.default_rng(0)
        tokens = rng.integers(0, cfg["vocab_size"], size=(cfg["B"], cfg["T"] + 1))
        data = dict(x=tokens[:, :-1].copy(), y=tokens[:, 1:].copy(),
                    prompt=rng.integers(0, cfg["vocab_size"], size=(cfg["B"], PROMPT_LEN)))
        mini = MinippoRunner(cfg, data)
        runners = [mini]
        if torch is not None:
            runners += [TorchRunner(cfg, data, sdpa, mini.initial_params) for sdpa in (False, True)]
        n_params = mini.model.num_parameters()
        print(f"\n== config {key}: vocab {cfg['vocab_size']}, n_embd {cfg['n_embd']}, {cfg['n_layer']} layers, "
              f"{cfg['n_head']} heads, T {cfg['T']}, batch {cfg['B']}; {n_params / 1e6:.2f}M parameters")
        if torch is not None:
            losses = ", ".join(f"{r.name} {r.loss():.6f}" for r in runners)
            print(f"   parity (initial loss): {losses}")
        if "train" not in ARGS.skip:
            times = measure(runners, "train_step", ARGS.repeats, ARGS.warmup, ARGS.calls)
            n_tok, flops = cfg["B"] * cfg["T"], train_flops(cfg)
            report(f"-- train step (forward + cross-entropy + backward + AdamW): {n_tok} tokens, "
                   f"{flops / 1e9:.2f} GFLOP", times, n_tok, flops)
            summary.append((key, "train", times))
        if "generate" not in ARGS.skip:
            times = measure(runners, "generate", ARGS.repeats, ARGS.warmup, ARGS.calls)
            n_tok, flops = cfg["B"] * (cfg["T"] - PROMPT_LEN), generation_flops(cfg)
            report(f"-- generation (prompt {PROMPT_LEN}, {cfg['T'] - PROMPT_LEN} new tokens x batch "
                   f"{cfg['B']}, temperature 1.0, KV cache): {n_tok} new tokens, "
                   f"{flops / 1e9:.3f} GFLOP", times, n_tok, flops)
            summary.append((key, "generate", times))
    if torch is not None and summary:
        targets = ", ".join(f"{workload} >= {target}x" for workload, target in TARGETS.items())
        print(f"\n== minippo speed relative to PyTorch (target: {targets})")
        print("   per repeat, both implementations run back to back, so each repeat gives one paired ratio;")
        print("   shown: median [lower quartile - upper quartile] of those ratios")
        for key, workload, times in summary:
            print(f"   {key} {workload:<8}: " + ", ".join(
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

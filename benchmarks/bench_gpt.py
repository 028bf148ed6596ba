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
KV-cache loop ("torch-sdpa"), all loaded from minippo's random initial weights.
``--limits`` measures this machine's limits with the benchmark's own shapes (sgemm GFLOP/s of every
product of the train step -- forward, dx and dW of each linear layer and the LM head's three -- in NumPy's
OpenBLAS and in torch, and the better library shape by shape; streaming-read bandwidth of every thread),
prints the time they allow, and each implementation's step time as a share of that limit;
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

PyTorch peers (``_torch_gpt.py``; only when ``import torch`` works and ``--no-torch`` is not given):
a compact GPT-2 with the same architecture -- pre-LN blocks, fused QKV ``Linear(C, 3C)``, tanh GELU, LM head tied to the
token embedding -- in eager mode with ``torch.set_num_threads`` equal to the OpenBLAS thread count,
trained with ``torch.optim.AdamW`` (default implementation, same parameter groups).  Attention is
run two ways: plain ``softmax(QKᵀ/√d + mask) V`` with matmuls ("torch-matmul") and
``F.scaled_dot_product_attention`` ("torch-sdpa").  Generation uses a lean loop under
``torch.inference_mode()`` with a preallocated KV cache and ``torch.multinomial``.  The PyTorch model
is loaded with minippo's initial weights and the two initial losses are printed as a parity check.

Timing (``_pairing.py``): after warm-up, each repeat visits every implementation in turn, interleaved.  On switching
it pauses (so that spinning BLAS/OpenMP worker threads of the other library go to sleep), runs one
untimed call (the first call after an idle pause is 5-15% slower for every implementation: cold
caches, sleeping threads), then times ``--calls`` calls back to back, as a training or sampling
loop runs them, and records their mean.  The median over repeats is reported, and the min in
brackets.  "vs minippo" is the speed ratio minippo tokens/s ÷ that implementation's tokens/s (> 1
means minippo is faster).  On a shared machine whole repeats run 10-15% faster or slower, so the
closing summary pairs the implementations within each repeat (one ratio per repeat) and shows the
median and quartiles of those ratios; a target counts as met only when the lower quartile meets it.

FLOP model (``_gpt_limits.py``, beside the measured limits; nominal, identical for every implementation;
biases, LayerNorm, GELU, softmax and the optimizer are not counted).  With L layers, width C,
vocabulary V, and the matmul parameter count N = 12·L·C² + V·C (the block weights plus the tied LM
head; position/token lookups are free):

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
import subprocess
import sys

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
ADAMW = dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
TARGETS = {"train": 1.2, "generate": 1.5}  # minippo speed / PyTorch speed, from the issue


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
from _gpt_limits import PROMPT_LEN, generation_flops, print_decode_limit, print_limits, train_flops  # noqa: E402
from _pairing import format_ratios, measure, paired_ratios, report, verdict  # noqa: E402

from minippo.blas import get_blas_threads  # noqa: E402
from minippo.memory import keep_freed_memory  # noqa: E402
from minippo.nn import GPT, AdamW, GPTConfig, cross_entropy  # noqa: E402
from minippo.parallel import get_num_threads, set_num_threads  # noqa: E402

torch = None
if not ARGS.no_torch:
    try:
        import torch  # noqa: E402
        from _torch_gpt import HFRunner, TorchRunner  # noqa: E402
    except ImportError:
        torch = None


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
            self.optimizer = AdamW(self.model.params, self.model.grads, **ADAMW)
        model = self.model
        model.zero_grad()
        loss = model.loss(x, y)  # LM head and cross-entropy fused over chunks of rows
        model.backward()
        self.optimizer.step()
        return loss

    def generate(self, prompt, max_new):
        return self.model.generate(prompt, max_new, temperature=1.0, rng=self.rng).tokens


def print_efficiency(times, limit):
    """Each implementation's step time against the fewest seconds the best sgemm rate allows."""
    print(f"  the sgemm limit ({limit * 1e3:.0f} ms) / step time, median [quartiles] over repeats: " + ", ".join(
        f"{name} {format_ratios([limit / t for t in seconds], '%')}" for name, seconds in times.items()))


def make_runners(key, cfg, block_size, workload, initial_params):
    runners = [MinippoRunner(cfg, block_size, initial_params)]
    if torch is None:
        return runners
    peers = ARGS.peers
    if peers is None:
        peers = ["torch-matmul", "torch-sdpa"] if key not in GPT2_SIZES else (
            ["hf"] if workload == "train" else ["hf", "torch-sdpa"])
    for peer in peers:
        runners.append(HFRunner(cfg, block_size, initial_params, ADAMW) if peer == "hf"
                       else TorchRunner(cfg, block_size, initial_params, ADAMW, sdpa=peer == "torch-sdpa"))
    return runners


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
              else HFRunner(cfg, block_size, initial_params, ADAMW))
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
        step_limits, bandwidth = {}, None
        if ARGS.limits:  # the limits of the workloads that run
            step_limits, bandwidth = print_limits(cfg, [] if "train" in ARGS.skip else train_shapes(cfg),
                                                  [] if "generate" in ARGS.skip else generate_shapes(cfg), torch)
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
                    if (B, length) in step_limits:
                        print_efficiency(times, step_limits[(B, length)])
                else:
                    times = measure(runners, "generate", (prompt, length), ARGS.repeats, ARGS.warmup,
                                    ARGS.calls)
                    n_tok, flops = B * length, generation_flops(cfg, B, length)
                    report(f"-- generation (prompt {PROMPT_LEN}, {length} new tokens x batch {B}, "
                           f"temperature 1.0, KV cache): {n_tok} new tokens, {flops / 1e9:.3f} GFLOP",
                           times, n_tok, flops)
                    if bandwidth is not None:
                        print_decode_limit(times, cfg, B, length, bandwidth)
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


if __name__ == "__main__":
    main()

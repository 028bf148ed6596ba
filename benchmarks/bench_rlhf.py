"""Where one RLHF iteration spends its time: generation, scoring forwards, training.

    python benchmarks/bench_rlhf.py                 # the demo's model and config M
    python benchmarks/bench_rlhf.py --configs demo --iterations 5
    python benchmarks/bench_rlhf.py --model gpt2 --iterations 1 --warmup 0   # GPT-2 124M, peak memory
    python benchmarks/bench_rlhf.py --against-trl rloo grpo --repeats 15     # against TRL 1.16, paired

``--against-trl`` races ``RLHFTrainer(algo="rloo")`` / ``algo="grpo"`` against TRL's ``RLOOTrainer`` /
``GRPOTrainer`` on PyTorch at the demo's shapes, in one process, paired (``benchmarks/_trl_rlhf.py``
says how); TRL is optional (``pip install trl==1.16.0``, or the ``bench-trl`` extra).

``--model gpt2`` runs a 124M policy (random weights, GPT-2's vocabulary of 50,257) with a frozen
reference, a value head on the policy's trunk (``critic="shared"``) and a 124M reward model
(a :class:`~minippo.rewards.reward_model.RewardModel`, random weights) as the reward, on 16 prompts of
16 tokens with 48 new tokens, and prints the peak resident memory of the process (VmHWM) beside the split;
then, in the same process, the tokens/s of the bare language-model train step (``GPT.loss`` + backward +
AdamW at B 4, T 256, as ``bench_gpt.py --configs gpt2`` times it) against the RLHF update's tokens/s.
Its minibatches of 16 responses × 64 tokens make one optimiser step per 1,024 tokens, as the bare step
does (``--minibatch-size 8`` halves that, and pays AdamW and clipping twice as often).

One PPO iteration of :class:`minippo.rlhf.trainer.RLHFTrainer` is split into

* **generate** -- KV-cache sampling of the responses (one position of attention per new token);
* **forward**  -- the old-policy, reference and critic forward passes over prompt + response;
* **train**    -- ``update_epochs`` epochs of minibatch forward + backward + AdamW of policy and critic.

Each phase is reported in seconds and tokens/s (generate: response tokens sampled; forward: sequence
tokens × the models run (old policy, reference, and a separate critic); train: sequence tokens × epochs ×
the trunks trained (the policy, and a separate critic)).  Responses always run to the length
limit (no EOS) and the reward is a cheap rule, so the numbers measure the engine, not the task.
GPU RLHF trainers report ~80% of the time in generation; on a CPU with a KV cache the balance differs,
and this script shows how.
"""
import argparse
import statistics
import time
from dataclasses import replace

import numpy as np
from _options import non_negative_int, positive_int
from _trl_rlhf import run as against_trl

from minippo.memory import keep_freed_memory
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.optim import AdamW
from minippo.parallel import set_num_threads
from minippo.rewards.reward_model import RewardModel
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer

CONFIGS = {
    # the demo's policy and PPO settings (byte vocabulary, prompts of ~30 tokens, 40 new tokens)
    "demo": dict(model=dict(vocab_size=258, block_size=96, n_layer=2, n_head=4, n_embd=96),
                 batch_size=64, minibatch_size=16, prompt_length=30, max_new_tokens=40),
    # config M of benchmarks/bench_gpt.py
    "M": dict(model=dict(vocab_size=2048, block_size=256, n_layer=6, n_head=8, n_embd=256),
              batch_size=32, minibatch_size=8, prompt_length=64, max_new_tokens=64),
    # GPT-2 124M policy and a 124M reward model (--model gpt2); minibatches of 16 x 64 tokens make one
    # optimiser step per 1,024 tokens, as the bare train step B4 T256 it is compared with does
    "gpt2": dict(model=dict(vocab_size=50257, block_size=64, n_layer=12, n_head=12, n_embd=768),
                 batch_size=16, minibatch_size=16, prompt_length=16, max_new_tokens=48,
                 critic="shared", reward_model=True, bare_train_step=(4, 256)),
}


class NumberTokenizer:
    """Text is space-separated token ids; no EOS, so every response has full length."""

    eos_id = None

    def __init__(self, vocab_size):
        self.vocab_size, self.pad_id = vocab_size, vocab_size - 1

    def encode(self, text, add_eos=False):
        return [int(word) for word in text.split()]

    def encode_end(self, text, max_tokens, add_eos=False):
        """The last ``max_tokens`` ids (there is no EOS to add), as the reward model reads them."""
        return self.encode(text)[-max_tokens:]

    def pad_batch(self, rows):
        """Every prompt has the same length here: no padding."""
        ids = np.array(rows, dtype=np.int64)
        return ids, np.ones_like(ids)

    def decode(self, ids, skip_special=True):
        return " ".join(str(i) for i in ids)


def length_reward(prompts, responses):
    return np.array([len(r) / 100.0 for r in responses])


class ModelReward:
    """A reward model as the reward: prompt and response texts joined by a space (number tokens)."""

    def __init__(self, model_config, tokenizer, seed):
        self.model = RewardModel(GPT(model_config, seed=seed + 1), tokenizer, seed=seed + 2)

    def __call__(self, prompts, responses):
        return self.model([prompt + " " for prompt in prompts], responses)


def peak_memory_mb():
    """This process's peak resident set (VmHWM), in MB."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024


def measure(name, iterations, warmup, seed=0, minibatch_size=None):
    spec = CONFIGS[name]
    model_config = GPTConfig(**spec["model"])
    tokenizer = NumberTokenizer(model_config.vocab_size)
    rng = np.random.default_rng(seed)
    policy = GPT(model_config, seed=seed)
    config = RLHFConfig(batch_size=spec["batch_size"], minibatch_size=minibatch_size or spec["minibatch_size"],
                        max_new_tokens=spec["max_new_tokens"], seed=seed, critic=spec.get("critic", "separate"))
    reward = ModelReward(model_config, tokenizer, seed) if spec.get("reward_model") else length_reward
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    prompts = [" ".join(map(str, row)) for row in
               rng.integers(0, model_config.vocab_size - 1, (config.batch_size, spec["prompt_length"]))]
    for _ in range(warmup):
        trainer.iteration(prompts)
    timings = {phase: [] for phase in ("generate", "score", "forward", "train")}
    totals = []
    for _ in range(iterations):
        started = time.perf_counter()
        stats = trainer.iteration(prompts)
        totals.append(time.perf_counter() - started)
        for phase in timings:
            timings[phase].append(stats[f"time/{phase}"])
    total = statistics.median(totals)
    B, T = config.batch_size, spec["prompt_length"] + config.max_new_tokens
    trunks = 1 if config.critic == "shared" else 2  # trained: the policy, and the critic's own copy
    tokens = {"generate": B * config.max_new_tokens, "score": B, "forward": (1 + trunks) * B * T,
              "train": trunks * config.update_epochs * B * T}
    print(f"\n{name}: {policy.num_parameters():,} parameters, batch {B}, prompt {spec['prompt_length']} + "
          f"{config.max_new_tokens} new tokens, {config.update_epochs} epochs of minibatch {config.minibatch_size}; "
          f"{total:.2f} s per iteration (median of {iterations}); peak resident memory {peak_memory_mb():,.0f} MB")
    print(f"  {'phase':10s}{'seconds':>10s}{'share':>8s}{'tokens/s':>12s}")
    for phase, values in timings.items():
        seconds = statistics.median(values)
        rate = "" if phase == "score" else f"{tokens[phase] / seconds:12,.0f}"
        print(f"  {phase:10s}{seconds:10.3f}{seconds / total:8.0%}{rate}")
    if spec.get("bare_train_step"):
        del trainer, policy, reward  # the bare step's model replaces them (peak memory is read above)
        train_rate = tokens["train"] / statistics.median(timings["train"])
        bare_B, bare_T = spec["bare_train_step"]
        bare_rate = bare_train_tokens_per_second(model_config, bare_B, bare_T, iterations, seed)
        print(f"  bare train step B{bare_B} T{bare_T} (GPT.loss + backward + AdamW, as bench_gpt.py): "
              f"{bare_rate:,.0f} tokens/s, one optimiser step per {bare_B * bare_T:,} tokens; RLHF training: one "
              f"per {config.minibatch_size * T:,} tokens (minibatch {config.minibatch_size} x {T}), "
              f"{bare_rate / train_rate:.2f}x the bare step's time per token")


def bare_train_tokens_per_second(model_config, B, T, repeats, seed):
    """Tokens/s of the plain language-model train step on the policy's architecture (median of ``repeats``
    after one untimed step): what an RLHF update's minibatch step is measured against."""
    model = GPT(replace(model_config, block_size=T), seed=seed)
    optimizer = AdamW(model.params, model.grads, lr=3e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    x, y = np.random.default_rng(seed).integers(0, model_config.vocab_size, (2, B, T))
    seconds = []
    for repeat in range(repeats + 1):
        started = time.perf_counter()
        model.zero_grad()
        model.loss(x, y)
        model.backward()
        optimizer.step()
        if repeat:
            seconds.append(time.perf_counter() - started)
    return B * T / statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["demo", "M"])
    parser.add_argument("--model", choices=["gpt2"], default=None,
                        help="GPT-2 124M policy and reward model instead of --configs")
    parser.add_argument("--iterations", type=positive_int, default=3,
                        help="timed iterations per config (default: 3)")
    parser.add_argument("--warmup", type=non_negative_int, default=1, help="untimed iterations first (default: 1)")
    parser.add_argument("--minibatch-size", type=positive_int, default=None,
                        help="responses per update step (default: the config's; it must divide the batch)")
    parser.add_argument("--against-trl", nargs="+", choices=["rloo", "grpo"], default=None,
                        help="race these algorithms against TRL instead of --configs")
    parser.add_argument("--repeats", type=positive_int, default=15,
                        help="--against-trl: paired repeats (default: 15)")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="--against-trl: threads of each library (default: 2)")
    args = parser.parse_args()
    keep_freed_memory()  # as the command line does
    if args.against_trl:
        set_num_threads(args.threads)
        against_trl(args.against_trl, args.repeats, args.threads)
        return
    for name in [args.model] if args.model else args.configs:
        measure(name, args.iterations, args.warmup, minibatch_size=args.minibatch_size)


if __name__ == "__main__":
    main()

"""Where one RLHF iteration spends its time: generation, scoring forwards, training.

    python benchmarks/bench_rlhf.py                 # the demo's model and config M
    python benchmarks/bench_rlhf.py --configs demo --iterations 5

One PPO iteration of :class:`minippo.rlhf.trainer.RLHFTrainer` is split into

* **generate** -- KV-cache sampling of the responses (one position of attention per new token);
* **forward**  -- the old-policy, reference and critic forward passes over prompt + response;
* **train**    -- ``update_epochs`` epochs of minibatch forward + backward + AdamW of policy and critic.

Each phase is reported in seconds and tokens/s (generate: response tokens sampled; forward: sequence
tokens × 3 models; train: sequence tokens × epochs × 2 models).  Responses always run to the length
limit (no EOS) and the reward is a cheap rule, so the numbers measure the engine, not the task.
GPU RLHF trainers report ~80% of the time in generation; on a CPU with a KV cache the balance differs,
and this script shows how.
"""
import argparse
import statistics
import time

import numpy as np
from _options import positive_int

from minippo.nn.gpt import GPT, GPTConfig
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer

CONFIGS = {
    # the demo's policy and PPO settings (byte vocabulary, prompts of ~30 tokens, 40 new tokens)
    "demo": dict(model=dict(vocab_size=258, block_size=96, n_layer=2, n_head=4, n_embd=96),
                 batch_size=64, minibatch_size=16, prompt_length=30, max_new_tokens=40),
    # config M of benchmarks/bench_gpt.py
    "M": dict(model=dict(vocab_size=2048, block_size=256, n_layer=6, n_head=8, n_embd=256),
              batch_size=32, minibatch_size=8, prompt_length=64, max_new_tokens=64),
}


class NumberTokenizer:
    """Text is space-separated token ids; no EOS, so every response has full length."""

    eos_id = None

    def __init__(self, vocab_size):
        self.vocab_size, self.pad_id = vocab_size, vocab_size - 1

    def encode_batch(self, texts, add_eos=False):
        ids = np.array([[int(word) for word in text.split()] for text in texts], dtype=np.int64)
        return ids, np.ones_like(ids)

    def decode(self, ids, skip_special=True):
        return " ".join(str(i) for i in ids)


def length_reward(prompts, responses):
    return np.array([len(r) / 100.0 for r in responses])


def measure(name, iterations, seed=0):
    spec = CONFIGS[name]
    model_config = GPTConfig(**spec["model"])
    tokenizer = NumberTokenizer(model_config.vocab_size)
    rng = np.random.default_rng(seed)
    policy = GPT(model_config, seed=seed)
    config = RLHFConfig(batch_size=spec["batch_size"], minibatch_size=spec["minibatch_size"],
                        max_new_tokens=spec["max_new_tokens"], seed=seed)
    trainer = RLHFTrainer(policy, length_reward, tokenizer, config)
    prompts = [" ".join(map(str, row)) for row in
               rng.integers(0, model_config.vocab_size - 1, (config.batch_size, spec["prompt_length"]))]
    trainer.iteration(prompts)  # warm-up
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
    tokens = {"generate": B * config.max_new_tokens, "score": B, "forward": 3 * B * T,
              "train": 2 * config.update_epochs * B * T}
    print(f"\n{name}: {policy.num_parameters():,} parameters, batch {B}, prompt {spec['prompt_length']} + "
          f"{config.max_new_tokens} new tokens, {config.update_epochs} epochs of minibatch {config.minibatch_size}; "
          f"{total:.2f} s per iteration (median of {iterations})")
    print(f"  {'phase':10s}{'seconds':>10s}{'share':>8s}{'tokens/s':>12s}")
    for phase, values in timings.items():
        seconds = statistics.median(values)
        rate = "" if phase == "score" else f"{tokens[phase] / seconds:12,.0f}"
        print(f"  {phase:10s}{seconds:10.3f}{seconds / total:8.0%}{rate}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--iterations", type=positive_int, default=3,
                        help="timed iterations per config (default: 3)")
    args = parser.parse_args()
    for name in args.configs:
        measure(name, args.iterations)


if __name__ == "__main__":
    main()

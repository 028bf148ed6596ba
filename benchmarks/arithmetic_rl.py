"""Does RL with a verifiable reward work on this CPU?  Pretrain a small GPT on the sloppy student's
arithmetic (minippo.tasks.arithmetic), then run RLHFTrainer(algo="rloo") against the exact-answer reward
and print the held-out accuracy (greedy and sampled at temperature 1) as it goes.

    PYTHONPATH=. python benchmarks/arithmetic_rl.py                 # the settings in arithmetic_notes.md
    PYTHONPATH=. python benchmarks/arithmetic_rl.py --help

The clock counts pretraining and RL; the periodic held-out evaluations are timed apart and left out of
the "train seconds" column (they are not part of a run, only of watching it).
"""
import argparse
import os
import time

import numpy as np

from minippo.blas import blas_threads
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import PretrainConfig, encode_documents, pretrain
from minippo.rewards.arithmetic import ArithmeticReward
from minippo.rlhf.rollout import generate_rollout
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.seeding import spawn_seeds
from minippo.tasks.arithmetic import (
    all_problems,
    has_carry,
    pretraining_corpus,
    split_problems,
)
from minippo.text.tokenizer import ByteTokenizer

MAX_NEW_TOKENS = 6  # " 198" and EOS fit with room to spare


def held_out_accuracy(policy, tokenizer, problems, reward, temperature, seed):
    """Mean exact-answer reward on ``problems`` (one response each; temperature 0 is greedy), the same on
    those with a carry, and the responses."""
    rollout = generate_rollout(policy, tokenizer, [problem.prompt for problem in problems], MAX_NEW_TOKENS,
                               temperature, np.random.default_rng(seed))
    right = reward(rollout.prompts, rollout.responses) == 1.0
    carry = np.array([has_carry(problem) for problem in problems])
    return float(right.mean()), float(right[carry].mean()), rollout.responses


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--seed", type=int, default=0)
    add("--operations", default="+", help="'+' or '+-'")
    add("--forget-carry", type=float, default=0.9)
    add("--miss", type=float, default=0.5)
    add("--corpus-epochs", type=int, default=3)
    add("--n-layer", type=int, default=2)
    add("--n-embd", type=int, default=96)
    add("--pretrain-steps", type=int, default=800)
    add("--pretrain-batch", type=int, default=64)
    add("--pretrain-lr", type=float, default=3e-3)
    add("--iterations", type=int, default=150)
    add("--prompts", type=int, default=64, help="prompts per RL iteration")
    add("--group", type=int, default=8, help="num_generations: samples per prompt (GRPO's G)")
    add("--minibatch", type=int, default=0, help="RL minibatch size (default: the whole batch, one step)")
    add("--lr", type=float, default=4e-4)
    add("--beta", type=float, default=0.0, help="fixed KL coefficient")
    add("--format-reward", type=float, default=0.0)
    add("--eval-problems", type=int, default=500)
    add("--eval-every", type=int, default=25)
    add("--threads", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    split_seed, corpus_seed, init_seed, pretrain_seed, rl_seed, prompt_seed, eval_seed = spawn_seeds(args.seed, 7)
    train, test = split_problems(all_problems(tuple(args.operations)), 0.1, split_seed)
    test = [test[i] for i in np.random.default_rng(eval_seed).permutation(len(test))[:args.eval_problems]]
    tokenizer = ByteTokenizer()
    reward = ArithmeticReward(args.format_reward)
    policy = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=args.n_layer, n_head=4,
                           n_embd=args.n_embd), seed=init_seed)
    lines = pretraining_corpus(train, args.forget_carry, args.miss, args.corpus_epochs, corpus_seed)
    documents = encode_documents(lines, tokenizer, policy.config.block_size)
    print(f"{len(train)} train / {len(test)} held-out problems, {len(lines)} corpus lines; load {os.getloadavg()}")
    eval_seconds = 0.0

    def report(label):
        nonlocal eval_seconds
        clock = time.perf_counter()
        greedy, greedy_carry, _ = held_out_accuracy(policy, tokenizer, test, reward, 0.0, eval_seed)
        sampled, sampled_carry, responses = held_out_accuracy(policy, tokenizer, test, reward, 1.0, eval_seed)
        eval_seconds += time.perf_counter() - clock
        train_seconds = time.perf_counter() - started - eval_seconds
        print(f"{label:>12s}  train {train_seconds:6.1f}s  held-out greedy {greedy:.3f} (carry {greedy_carry:.3f})  "
              f"sampled {sampled:.3f} (carry {sampled_carry:.3f})  load {os.getloadavg()[0]:.1f}  "
              f"e.g. {responses[:4]}", flush=True)
        return sampled

    with blas_threads(args.threads):
        pretrain_config = PretrainConfig(steps=args.pretrain_steps, batch_size=args.pretrain_batch,
                                         learning_rate=args.pretrain_lr, min_learning_rate=args.pretrain_lr / 10,
                                         seed=pretrain_seed, log_every=200)
        pretrain(policy, documents, pretrain_config, tokenizer)
        report("pretrained")
        batch = args.prompts * args.group
        config = RLHFConfig(algo="rloo", batch_size=batch, minibatch_size=args.minibatch or batch,
                            max_new_tokens=MAX_NEW_TOKENS, learning_rate=args.lr, num_generations=args.group,
                            init_kl_coef=args.beta, kl_target=None, seed=rl_seed)
        trainer = RLHFTrainer(policy, reward, tokenizer, config)
        prompt_rng = np.random.default_rng(prompt_seed)
        for iteration in range(1, args.iterations + 1):
            stats = trainer.iteration([train[i].prompt for i in prompt_rng.integers(0, len(train), args.prompts)])
            if iteration % args.eval_every == 0:
                kl = f"{stats['objective/kl_k1']:.3f}" if "objective/kl_k1" in stats else "–"  # (none at β = 0)
                print(f"  iter {iteration}: train reward {stats['reward/mean']:.3f}  "
                      f"kl {kl}  entropy {stats['policy/entropy']:.3f}  "
                      f"len {stats['completions/mean_length']:.2f}")
                report(f"rl {iteration}")
    print(f"total {time.perf_counter() - started:.0f}s of which evaluation {eval_seconds:.0f}s")


if __name__ == "__main__":
    main()

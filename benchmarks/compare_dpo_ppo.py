"""DPO against PPO on the demo's politeness task, in the demo's units.

    python benchmarks/compare_dpo_ppo.py                      # seed 0, DPO with β = 0.1, 0.5, 1 and 2
    python benchmarks/compare_dpo_ppo.py --betas 1 2 --reuse-demo     # DPO again, same demo run

1. ``minippo demo`` (:func:`minippo.rlhf.pipeline.run_demo`): pretraining, the reward model (normalised on
   the pretrained policy's samples), PPO against it; it writes the pretrained policy (``base_policy.npz``),
   the reward model and the PPO policy.
2. DPO from that same pretrained policy on the shipped preference pairs (the ones the reward model learned
   from), once per β, with the default DPOConfig otherwise (200 steps of 32 pairs).
3. Every policy is evaluated by the demo's evaluation (:func:`minippo.rlhf.pipeline.evaluate_on_prompts`)
   on the demo's held-out prompts with the demo's evaluation seed: mean reward under the demo's reward
   model (in standard deviations of the pretrained policy's reward), share of polite answers by the corpus
   rule, and KL to the pretrained policy (nats per response).  The pretrained and PPO rows therefore repeat
   the demo's own before/after table.

PPO learns from 64 × 30 sampled responses scored by the reward model; DPO reads the 1,059 labelled pairs
and never samples.  DPO's time is its own training (the reference's log-probabilities included); the
demo's is printed whole.
"""
import argparse
import copy
import json
import os
import time

from _options import positive_float, positive_int

from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.rlhf.dpo import DPOConfig, DPOTrainer
from minippo.rlhf.pipeline import DemoConfig, evaluate_on_prompts, run_demo
from minippo.seeding import spawn_seeds
from minippo.text.corpus import format_prompt, load_preferences, load_prompts
from minippo.text.tokenizer import ByteTokenizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the demo's seed (default: 0)")
    parser.add_argument("--betas", type=positive_float, nargs="+", default=[0.1, 0.5, 1.0, 2.0],
                        help="DPO's β values")
    parser.add_argument("--steps", type=positive_int, default=DPOConfig.steps, help="DPO steps")
    parser.add_argument("--learning-rate", type=positive_float, default=DPOConfig.learning_rate, help="DPO's peak lr")
    parser.add_argument("--out", default="runs/compare_dpo_ppo", help="output directory")
    parser.add_argument("--reuse-demo", action="store_true", help="reuse the demo run already in --out/demo")
    args = parser.parse_args()

    demo_dir = os.path.join(args.out, "demo")
    config = DemoConfig(seed=args.seed)
    if args.reuse_demo:
        with open(os.path.join(demo_dir, "summary.json"), encoding="utf-8") as file:
            summary = json.load(file)
        if summary["config"]["seed"] != args.seed:
            parser.error(f"{demo_dir} holds the demo of seed {summary['config']['seed']}, not {args.seed}")
    else:
        summary = run_demo(config, out_dir=demo_dir, log=lambda line: None)
    base = load_model(os.path.join(demo_dir, "base_policy.npz"))
    reward_model = RewardModel.load(os.path.join(demo_dir, "reward_model.npz"))
    ppo = load_model(os.path.join(demo_dir, "policy.npz"))
    policies = {"pretrained": (base, None, ""), "PPO (demo)": (ppo, None, "")}  # (policy, DPO seconds, DPO accuracy)
    for beta in args.betas:
        policy = copy.deepcopy(base)
        started = time.perf_counter()
        trainer = DPOTrainer(policy, ByteTokenizer(), load_preferences("train"),
                             DPOConfig(beta=beta, steps=args.steps, learning_rate=args.learning_rate, seed=args.seed),
                             test_pairs=load_preferences("test"))
        rows = trainer.train(log=lambda line: None)
        policies[f"DPO β={beta:g}"] = (policy, time.perf_counter() - started, f"{rows[-1]['test_accuracy']:.1%}")

    evaluation_seed = spawn_seeds(config.seed, 8)[7]  # run_demo's evaluation stream (its 8th derived seed)
    test_prompts = [format_prompt(p) for p in load_prompts("test")]
    eval_prompts = [test_prompts[i % len(test_prompts)] for i in range(config.eval_samples)]
    print(f"demo seed {args.seed}: {summary['seconds']:.0f} s in all, reward-model held-out accuracy "
          f"{summary['reward_model_accuracy']:.1%}; {config.eval_samples} held-out samples per policy; "
          f"DPO {args.steps} steps, lr {args.learning_rate:g}")
    print("| policy | mean reward | polite | KL to pretrained | DPO seconds | DPO held-out pair accuracy |")
    print("|---|---|---|---|---|---|")
    for name, (policy, seconds, pair_accuracy) in policies.items():
        result = evaluate_on_prompts(policy, base, reward_model, ByteTokenizer(), eval_prompts, config.rlhf,
                                     evaluation_seed)
        print(f"| {name} | {result['reward']:+.3f} | {result['polite_fraction']:.1%} | {result['kl']:.2f} | "
              f"{'' if seconds is None else f'{seconds:.0f}'} | {pair_accuracy} |")


if __name__ == "__main__":
    main()

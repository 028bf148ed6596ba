"""``minippo grpo``: RL with a verifiable reward on two-digit arithmetic, end to end."""
import os

from minippo.commands import options
from minippo.commands.models import load_policy_and_tokenizer
from minippo.tasks.pipeline import ArithmeticRLConfig, run_arithmetic_rl

SKIPPED = ("pretrain_seed",)  # derived from seed (ArithmeticRLConfig's docstring)


def register(subparsers):
    parser = subparsers.add_parser(
        "grpo",
        help="RL with a verifiable reward: pretrain on sloppy arithmetic, RL on the exact answer, before/after",
        description="Pretrain a tiny GPT on two-digit additions answered by a sloppy student (or take --policy), "
        "run group-sampled RL against the exact-answer reward, and print the held-out accuracy before and after "
        "(sampled at temperature 1 and greedy). Writes summary.json, rl_log.csv, samples.jsonl, policy.npz and "
        "(with matplotlib) rl.png to --out, with the settings run with as config.json (which --config reads back).",
    )
    parser.add_argument("--out", default="runs/grpo", help="output directory (default: runs/grpo)")
    parser.add_argument("--policy", help="start from this policy checkpoint (.npz) or Hugging Face GPT-2 "
                        "directory instead of pretraining")
    options.add_config_option(parser)
    options.add_setting_options(parser, ArithmeticRLConfig(), skip=SKIPPED)
    parser.set_defaults(func=run)


def run(args):
    config = options.apply_settings(ArithmeticRLConfig(), options.chosen_settings(args), skip=SKIPPED)
    policy, tokenizer = load_policy_and_tokenizer(args.policy) if args.policy else (None, None)
    options.write_config(os.path.join(args.out, options.CONFIG_NAME), options.setting_values(config, skip=SKIPPED))
    run_arithmetic_rl(config, out_dir=args.out, policy=policy, tokenizer=tokenizer)

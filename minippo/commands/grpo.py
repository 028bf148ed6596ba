"""``minippo grpo``: RL with a verifiable reward on two-digit arithmetic, end to end."""
import os

import numpy as np

from minippo.commands import options
from minippo.commands.models import load_policy_and_tokenizer
from minippo.commands.tokenizer import add_tokenizer_option, load_tokenizer
from minippo.run_log import RunLog, add_tensorboard_option
from minippo.sizes import check_memory, gpt_sizes, grpo_memory
from minippo.tasks.pipeline import ArithmeticRLConfig, run_arithmetic_rl

SKIPPED = ("pretrain_seed",)  # derived from seed (ArithmeticRLConfig's docstring)


def register(subparsers):
    parser = subparsers.add_parser(
        "grpo",
        help="RL with a verifiable reward: pretrain on sloppy arithmetic, RL on the exact answer, before/after",
        description="Pretrain a tiny GPT on two-digit additions answered by a sloppy student (or take --policy), "
        "run group-sampled RL against the exact-answer reward, and print the held-out accuracy before and after "
        "(sampled at temperature 1 and greedy). Writes summary.json, rl_log.csv, samples.jsonl, policy.npz and "
        "(with matplotlib) rl.png to --out, with the settings run with as config.json (which --config reads back); "
        "--tensorboard DIR also logs every iteration's figures there.",
    )
    parser.add_argument("--out", default="runs/grpo", help="output directory (default: runs/grpo)")
    parser.add_argument("--policy", help="start from this policy checkpoint (.npz) or Hugging Face GPT-2 "
                        "directory instead of pretraining")
    options.add_config_option(parser)
    options.add_setting_options(parser, ArithmeticRLConfig(), skip=SKIPPED)
    add_tokenizer_option(parser)
    add_tensorboard_option(parser)
    parser.set_defaults(func=run)


def require_memory_for(config, policy, tokenizer):
    """Refuse now, naming the option, if the pretraining or the RL stage cannot fit."""
    blamed = {"--prompts-per-iteration": config.prompts_per_iteration, "--num-generations": config.num_generations}
    if policy is None:
        model = {"vocab_size": tokenizer.vocab_size, "block_size": config.block_size, "n_head": config.n_head,
                 "n_layer": config.n_layer, "n_embd": config.n_embd, "itemsize": np.dtype(np.float32).itemsize}
        blamed.update({"--n-layer": config.n_layer, "--n-embd": config.n_embd})
    else:
        model = gpt_sizes(policy.config)
    check_memory(grpo_memory, blamed, {"model": model, "n_layer": model["n_layer"], "n_embd": model["n_embd"],
                                        "max_new_tokens": config.max_new_tokens,
                                        "pretrain_batch": config.pretrain.batch_size})


def run(args):
    config = options.apply_settings(ArithmeticRLConfig(), options.chosen_settings(args), skip=SKIPPED)
    if args.policy is None:
        policy, tokenizer = None, load_tokenizer(args.tokenizer)
    elif args.tokenizer is not None:
        raise ValueError(f"--tokenizer cannot be used with --policy: {args.policy} brings its own tokenizer")
    else:
        policy, tokenizer = load_policy_and_tokenizer(args.policy)
    require_memory_for(config, policy, tokenizer)
    settings = options.setting_values(config, skip=SKIPPED)
    options.write_config(os.path.join(args.out, options.CONFIG_NAME), settings)
    run_log = RunLog(args.tensorboard, settings)
    run_arithmetic_rl(config, out_dir=args.out, policy=policy, tokenizer=tokenizer, run_log=run_log)
    run_log.close()

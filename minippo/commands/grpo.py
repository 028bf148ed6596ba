"""``minippo grpo``: RL with a verifiable reward on two-digit arithmetic, end to end."""
from dataclasses import fields, replace

import numpy as np

from minippo.commands import integer_option
from minippo.commands.models import load_policy_and_tokenizer
from minippo.distributed import require_one_process
from minippo.rl.advantages import SCALE_REWARDS
from minippo.rl.losses import LOSS_TYPES
from minippo.rlhf.trainer import RLHF_ALGORITHMS
from minippo.sizes import check_memory, gpt_sizes, grpo_memory
from minippo.tasks.pipeline import ArithmeticRLConfig, run_arithmetic_rl
from minippo.text.tokenizer import ByteTokenizer

# the ArithmeticRLConfig fields that are options, named after them (--num-generations), with their types
SETTING_OPTIONS = {
    "seed": integer_option(0), "iterations": integer_option(1), "prompts_per_iteration": integer_option(1),
    "num_generations": integer_option(2), "learning_rate": float, "format_reward": float,
    "n_layer": integer_option(1), "n_embd": integer_option(1), "eval_problems": integer_option(1),
}
# the ArithmeticRLConfig fields that are options with a set of choices (Dr. GRPO: --scale-rewards none
# --loss-type dr_grpo)
CHOICE_OPTIONS = {"scale_rewards": SCALE_REWARDS, "loss_type": LOSS_TYPES}


def add_setting_options(parser, defaults):
    """``--num-generations`` and the like, one per SETTING_OPTIONS and CHOICE_OPTIONS field, with its
    one-line help and default."""
    helps = {field.name: field.metadata["help"] for field in fields(defaults)}
    parsing = {**{name: {"type": kind} for name, kind in SETTING_OPTIONS.items()},
               **{name: {"choices": choices} for name, choices in CHOICE_OPTIONS.items()}}
    for name, how in parsing.items():
        default = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", **how, default=default,
                            help=f"{helps[name]} (default: {default})")


def register(subparsers):
    defaults = ArithmeticRLConfig()
    parser = subparsers.add_parser(
        "grpo",
        help="RL with a verifiable reward: pretrain on sloppy arithmetic, RL on the exact answer, before/after",
        description="Pretrain a tiny GPT on two-digit additions answered by a sloppy student (or take --policy), "
        "run group-sampled RL against the exact-answer reward, and print the held-out accuracy before and after "
        "(sampled at temperature 1 and greedy). Writes summary.json, rl_log.csv, samples.jsonl, policy.npz and "
        "(with matplotlib) rl.png to --out.",
    )
    parser.add_argument("--out", default="runs/grpo", help="output directory (default: runs/grpo)")
    parser.add_argument("--policy", help="start from this policy checkpoint (.npz) or Hugging Face GPT-2 "
                        "directory instead of pretraining")
    parser.add_argument("--pretrain-steps", type=integer_option(1), default=defaults.pretrain.steps,
                        help=f"pretraining steps (default: {defaults.pretrain.steps})")
    parser.add_argument("--algo", choices=RLHF_ALGORITHMS, default=defaults.algo,
                        help=f"RL algorithm (default: {defaults.algo})")
    add_setting_options(parser, defaults)
    parser.set_defaults(func=run)


def require_memory_for(config, policy):
    """Refuse now, naming the option, if the pretraining or the RL stage cannot fit."""
    options = {"--prompts-per-iteration": config.prompts_per_iteration, "--num-generations": config.num_generations}
    if policy is None:
        model = {"vocab_size": ByteTokenizer().vocab_size, "block_size": config.block_size, "n_head": config.n_head,
                 "n_layer": config.n_layer, "n_embd": config.n_embd, "itemsize": np.dtype(np.float32).itemsize}
        options.update({"--n-layer": config.n_layer, "--n-embd": config.n_embd})
    else:
        model = gpt_sizes(policy.config)
    check_memory(grpo_memory, options, {"model": model, "n_layer": model["n_layer"], "n_embd": model["n_embd"],
                                        "max_new_tokens": config.max_new_tokens,
                                        "pretrain_batch": config.pretrain.batch_size})


def run(args):
    require_one_process("minippo grpo", "Its RL stage scales out as mpiexec -n N minippo rlhf (docs/mpi.md).")
    defaults = ArithmeticRLConfig()
    config = replace(defaults, algo=args.algo, pretrain=replace(defaults.pretrain, steps=args.pretrain_steps),
                     **{name: getattr(args, name) for name in (*SETTING_OPTIONS, *CHOICE_OPTIONS)})
    policy, tokenizer = load_policy_and_tokenizer(args.policy) if args.policy else (None, None)
    require_memory_for(config, policy)
    run_arithmetic_rl(config, out_dir=args.out, policy=policy, tokenizer=tokenizer)

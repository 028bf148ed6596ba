"""``minippo demo``: the whole RLHF pipeline on the shipped corpus, end to end (the README's main command)."""
from dataclasses import replace

from minippo.commands import integer_option
from minippo.commands.tokenizer import add_tokenizer_option, load_tokenizer
from minippo.distributed import require_one_process
from minippo.rlhf.pipeline import DemoConfig, run_demo


def register(subparsers):
    defaults = DemoConfig()
    parser = subparsers.add_parser(
        "demo",
        help="run the whole RLHF pipeline: pretrain, reward model, PPO, before/after table",
        description="Pretrain a tiny GPT on the shipped dialogues, train a reward model on preference "
        "pairs, run PPO against it with a KL target, and print a before/after table on held-out prompts. "
        "Writes summary.json, rlhf_log.csv and (with matplotlib) rlhf.png to --out.",
    )
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    parser.add_argument("--seed", type=integer_option(0), default=defaults.seed,
                        help="seed of every stage (default: 0)")
    parser.add_argument("--pretrain-steps", type=integer_option(1), default=defaults.pretrain.steps,
                        help=f"pretraining steps (default: {defaults.pretrain.steps})")
    parser.add_argument("--reward-steps", type=integer_option(1), default=defaults.reward_steps,
                        help=f"reward-model training steps (default: {defaults.reward_steps})")
    parser.add_argument("--iterations", type=integer_option(1), default=defaults.iterations,
                        help=f"PPO iterations (default: {defaults.iterations})")
    parser.add_argument("--kl-target", type=float, default=defaults.rlhf.kl_target,
                        help=f"target KL to the reference per response, nats (default: {defaults.rlhf.kl_target})")
    add_tokenizer_option(parser)
    parser.set_defaults(func=run)


def run(args):
    require_one_process("minippo demo", "Its stages scale out one by one: mpiexec -n N minippo pretrain, "
                        "reward-model, rlhf (docs/mpi.md).")
    defaults = DemoConfig()
    config = replace(
        defaults,
        seed=args.seed,
        pretrain=replace(defaults.pretrain, steps=args.pretrain_steps),
        reward_steps=args.reward_steps,
        iterations=args.iterations,
        rlhf=replace(defaults.rlhf, kl_target=args.kl_target),
    )
    run_demo(config, out_dir=args.out, tokenizer=load_tokenizer(args.tokenizer))

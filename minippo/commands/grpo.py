"""``minippo grpo``: RL with a verifiable reward on two-digit arithmetic, end to end."""
from dataclasses import replace

from minippo.commands import integer_option
from minippo.commands.models import load_policy_and_tokenizer
from minippo.rlhf.trainer import RLHF_ALGORITHMS
from minippo.tasks.pipeline import ArithmeticRLConfig, run_arithmetic_rl


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
    add = parser.add_argument
    add("--out", default="runs/grpo", help="output directory (default: runs/grpo)")
    add("--seed", type=integer_option(0), default=defaults.seed, help="seed of every stage (default: 0)")
    add("--policy", help="start from this policy checkpoint (.npz) or Hugging Face GPT-2 directory instead of "
        "pretraining")
    add("--algo", choices=RLHF_ALGORITHMS, default=defaults.algo, help=f"RL algorithm (default: {defaults.algo})")
    add("--iterations", type=integer_option(1), default=defaults.iterations,
        help=f"RL iterations (default: {defaults.iterations})")
    add("--prompts-per-iteration", type=integer_option(1), default=defaults.prompts_per_iteration,
        help=f"training problems per iteration (default: {defaults.prompts_per_iteration})")
    add("--num-generations", type=integer_option(2), default=defaults.num_generations,
        help=f"responses sampled per problem (default: {defaults.num_generations})")
    add("--learning-rate", type=float, default=defaults.learning_rate,
        help=f"RL learning rate (default: {defaults.learning_rate})")
    add("--format-reward", type=float, default=defaults.format_reward,
        help=f"reward of a wrong but well-formed answer, in [0, 1) (default: {defaults.format_reward})")
    add("--pretrain-steps", type=integer_option(1), default=defaults.pretrain.steps,
        help=f"pretraining steps (default: {defaults.pretrain.steps})")
    add("--n-layer", type=integer_option(1), default=defaults.n_layer,
        help=f"transformer blocks (default: {defaults.n_layer})")
    add("--n-embd", type=integer_option(1), default=defaults.n_embd,
        help=f"embedding width, a multiple of the 4 heads (default: {defaults.n_embd})")
    add("--eval-problems", type=integer_option(1), default=defaults.eval_problems,
        help=f"held-out problems evaluated before and after (default: {defaults.eval_problems})")
    parser.set_defaults(func=run)


def run(args):
    defaults = ArithmeticRLConfig()
    config = replace(defaults, seed=args.seed, algo=args.algo, iterations=args.iterations,
                     prompts_per_iteration=args.prompts_per_iteration, num_generations=args.num_generations,
                     learning_rate=args.learning_rate, format_reward=args.format_reward,
                     pretrain=replace(defaults.pretrain, steps=args.pretrain_steps),
                     n_layer=args.n_layer, n_embd=args.n_embd, eval_problems=args.eval_problems)
    policy, tokenizer = load_policy_and_tokenizer(args.policy) if args.policy else (None, None)
    run_arithmetic_rl(config, out_dir=args.out, policy=policy, tokenizer=tokenizer)

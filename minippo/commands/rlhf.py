"""``minippo rlhf``: PPO, REINFORCE or RLOO on your own policy checkpoint against a reward model or a rule."""
import os

import numpy as np

from minippo.commands import integer_option
from minippo.nn.checkpoint import save_checkpoint
from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.rewards.rule_specs import RULE_REWARD_KINDS, parse_rule_reward
from minippo.rlhf.pipeline import progress_line, write_csv
from minippo.rlhf.trainer import RLHF_ALGORITHMS, RLHFConfig, RLHFTrainer
from minippo.seeding import spawn_seeds
from minippo.text.corpus import format_prompt, load_prompts
from minippo.text.files import read_text
from minippo.text.tokenizer import ByteTokenizer


def load_reward(spec):
    """A reward callable from a rule spec such as ``rouge:refs.txt`` or a reward-model checkpoint (``*.npz``)."""
    if spec.endswith(".npz") and spec.partition(":")[0].strip().lower() not in RULE_REWARD_KINDS:
        return RewardModel.load(spec)
    return parse_rule_reward(spec)


def read_prompts(path):
    """Prompts from a file (one per line, used verbatim), or the shipped training prompts as "Q: ... A:"."""
    if path is None:
        return [format_prompt(p) for p in load_prompts("train")]
    prompts = [line for line in read_text(path).split("\n") if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts found (one prompt per line)")
    return prompts


def register(subparsers):
    defaults = RLHFConfig()
    parser = subparsers.add_parser(
        "rlhf",
        help="fine-tune a policy checkpoint with PPO/REINFORCE/RLOO against a reward",
        description="RL fine-tuning of a GPT checkpoint (from `minippo pretrain` or `minippo demo`) with a "
        "KL penalty to its starting point. The reward is a reward-model checkpoint (*.npz, from "
        "`minippo reward-model`) or a rule: bleu:REFS, rouge:REFS, keyword:W1,W2, length:N.",
    )
    parser.add_argument("--policy", required=True, help="policy checkpoint (.npz)")
    parser.add_argument("--reward", required=True, help="reward-model checkpoint (.npz) or rule spec")
    parser.add_argument("--algo", choices=RLHF_ALGORITHMS, default=defaults.algo, help="algorithm (default: ppo)")
    parser.add_argument("--prompts", help="prompt file, one per line, used verbatim (default: shipped prompts)")
    parser.add_argument("--iterations", type=integer_option(1), default=40, help="iterations (default: 40)")
    parser.add_argument("--batch-size", type=integer_option(1), default=defaults.batch_size,
                        help=f"responses per iteration (default: {defaults.batch_size})")
    parser.add_argument("--minibatch-size", type=integer_option(1), default=defaults.minibatch_size,
                        help=f"responses per gradient step; must divide --batch-size "
                             f"(default: {defaults.minibatch_size})")
    parser.add_argument("--max-new-tokens", type=integer_option(1), default=defaults.max_new_tokens,
                        help="response length limit")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="sampling temperature")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate, help="learning rate")
    parser.add_argument("--kl-target", type=float, default=defaults.kl_target,
                        help=f"adaptive-KL target in nats per response (default: {defaults.kl_target})")
    parser.add_argument("--fixed-kl", type=float, default=None, help="use this fixed β instead of adaptive KL")
    parser.add_argument("--critic", choices=("shared", "separate"), default=defaults.critic, help="critic trunk")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.add_argument("--out", default="runs/rlhf", help="output directory (default: runs/rlhf)")
    parser.set_defaults(func=run)


def run(args):
    rlhf_seed, prompt_seed = spawn_seeds(args.seed, 2)  # sampling in the trainer, picking prompts here
    config = RLHFConfig(algo=args.algo, batch_size=args.batch_size, minibatch_size=args.minibatch_size,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        learning_rate=args.learning_rate,
                        critic=args.critic, seed=rlhf_seed,
                        kl_target=None if args.fixed_kl is not None else args.kl_target,
                        init_kl_coef=args.fixed_kl if args.fixed_kl is not None else RLHFConfig.init_kl_coef)
    policy = load_model(args.policy)
    reward = load_reward(args.reward)
    prompts = read_prompts(args.prompts)
    tokenizer = ByteTokenizer()
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    rng = np.random.default_rng(prompt_seed)  # the same prompts on every rank; each takes its share
    os.makedirs(args.out, exist_ok=True)
    print(f"{config.algo}: {args.iterations} iterations of {config.batch_size} responses, "
          f"{trainer.world.describe()}")
    rows = []
    for iteration in range(1, args.iterations + 1):
        batch_prompts = [prompts[i] for i in rng.integers(0, len(prompts), config.batch_size // (
            config.rloo_k if config.algo == "rloo" else 1))]
        stats = trainer.iteration(batch_prompts)
        rows.append({"iteration": iteration, **stats})
        print(progress_line(iteration, args.iterations, stats))
    if not trainer.world.is_root:  # the other ranks hold the same policy and figures
        return
    write_csv(rows, os.path.join(args.out, "rlhf_log.csv"))
    path = os.path.join(args.out, "policy.npz")
    save_checkpoint(path, policy.params, policy.config.to_dict(), extra={"tokenizer": "byte"}, kind="gpt")
    print(f"wrote {path} and {os.path.join(args.out, 'rlhf_log.csv')}")

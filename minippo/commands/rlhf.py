"""``minippo rlhf``: PPO, REINFORCE, RLOO or GRPO on your own policy checkpoint against a reward model or a rule."""
import dataclasses
import os

import numpy as np

from minippo.commands import integer_option
from minippo.commands.models import (
    add_template_option,
    command_template,
    load_policy_and_reward,
    policy_template,
    reward_template,
)
from minippo.nn.checkpoint import save_checkpoint
from minippo.rl.advantages import SCALE_REWARDS
from minippo.rl.kl import KL_ESTIMATORS
from minippo.rl.losses import LOSS_TYPES
from minippo.rlhf.diagnostics import SampleLog, progress_line, write_csv
from minippo.rlhf.trainer import RLHF_ALGORITHMS, RLHFConfig, RLHFTrainer
from minippo.seeding import spawn_seeds
from minippo.text.corpus import load_prompts
from minippo.text.files import read_text
from minippo.text.gpt2 import tokenizer_record


def read_prompts(path):
    """The prompts of a file, one per line as written, or the shipped training prompts (raw: rlhf lays them out
    with its template; generate samples from them as they are)."""
    if path is None:
        return load_prompts("train")
    prompts = [line for line in read_text(path).split("\n") if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts found (one prompt per line)")
    return prompts


HELP = {spec.name: spec.metadata["help"] for spec in dataclasses.fields(RLHFConfig)}


def register(subparsers):
    defaults = RLHFConfig()
    parser = subparsers.add_parser(
        "rlhf",
        help="fine-tune a policy checkpoint with PPO/REINFORCE/RLOO/GRPO against a reward",
        description="RL fine-tuning of a GPT checkpoint (from `minippo pretrain` or `minippo demo`) with a "
        "KL penalty to its starting point. The policy and a reward model may also be Hugging Face GPT-2 "
        "directories. The reward is a reward-model checkpoint (*.npz, from `minippo reward-model`) or a "
        "rule: bleu:REFS, rouge:REFS, keyword:W1,W2, length:N.",
    )
    parser.add_argument("--policy", required=True, help="policy checkpoint (.npz) or Hugging Face GPT-2 directory")
    parser.add_argument("--reward", required=True,
                        help="reward-model checkpoint (.npz), Hugging Face reward-model directory, or rule spec")
    parser.add_argument("--algo", choices=RLHF_ALGORITHMS, default=defaults.algo, help="algorithm (default: ppo)")
    parser.add_argument("--prompts", help="prompt file, one raw prompt per line, formatted by the template "
                        "(default: shipped prompts)")
    add_template_option(parser)
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
    parser.add_argument("--fixed-kl", type=float, default=None,
                        help="use this fixed β instead of adaptive KL (grpo: β of the KL term in the loss; 0: "
                             "no reference model)")
    parser.add_argument("--critic", choices=("shared", "separate"), default=defaults.critic, help="critic trunk")
    parser.add_argument("--num-generations", type=integer_option(1), default=defaults.num_generations,
                        help=f"{HELP['num_generations']} (default: {defaults.num_generations})")
    parser.add_argument("--update-epochs", type=integer_option(1), default=defaults.update_epochs,
                        help=f"{HELP['update_epochs']} (default: {defaults.update_epochs})")
    parser.add_argument("--clip-coef", type=float, default=defaults.clip_coef,
                        help=f"{HELP['clip_coef']} (default: {defaults.clip_coef})")
    parser.add_argument("--clip-coef-high", type=float, default=None, help=HELP["clip_coef_high"])
    parser.add_argument("--kl-estimator", choices=KL_ESTIMATORS, default=None,
                        help=f"{HELP['kl_estimator']} (default: k3 for grpo, k1 otherwise)")
    parser.add_argument("--scale-rewards", choices=SCALE_REWARDS, default=defaults.scale_rewards,
                        help=f"{HELP['scale_rewards']} (default: {defaults.scale_rewards})")
    parser.add_argument("--loss-type", choices=LOSS_TYPES, default=None,
                        help=f"{HELP['loss_type']} (default: grpo for grpo, dapo otherwise)")
    parser.add_argument("--missing-eos-penalty", type=float, default=None, help=HELP["missing_eos_penalty"])
    parser.add_argument("--mask-truncated-completions", action="store_true", help=HELP["mask_truncated_completions"])
    parser.add_argument("--dynamic-sampling-tries", type=integer_option(0), default=0,
                        help=HELP["dynamic_sampling_tries"])
    parser.add_argument("--samples-every", type=integer_option(0), default=0, metavar="K",
                        help="every K iterations, append that iteration's responses and rewards to samples.jsonl "
                             "in --out (default: 0, off)")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.add_argument("--out", default="runs/rlhf", help="output directory (default: runs/rlhf)")
    parser.set_defaults(func=run)


def run(args):
    rlhf_seed, prompt_seed = spawn_seeds(args.seed, 2)  # sampling in the trainer, picking prompts here
    config = RLHFConfig(algo=args.algo, batch_size=args.batch_size, minibatch_size=args.minibatch_size,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        learning_rate=args.learning_rate,
                        critic=args.critic, seed=rlhf_seed, num_generations=args.num_generations,
                        update_epochs=args.update_epochs, clip_coef=args.clip_coef,
                        clip_coef_high=args.clip_coef_high, kl_estimator=args.kl_estimator,
                        scale_rewards=args.scale_rewards, loss_type=args.loss_type,
                        missing_eos_penalty=args.missing_eos_penalty,
                        mask_truncated_completions=args.mask_truncated_completions,
                        dynamic_sampling_tries=args.dynamic_sampling_tries,
                        kl_target=None if args.fixed_kl is not None else args.kl_target,
                        init_kl_coef=args.fixed_kl if args.fixed_kl is not None else RLHFConfig.init_kl_coef)
    policy, tokenizer, reward = load_policy_and_reward(args.policy, args.reward)
    template = command_template(args.template, [(policy_template(args.policy), args.policy),
                                                reward_template(reward, args.reward)])
    prompts = [template.prompt_text(prompt) for prompt in read_prompts(args.prompts)]
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    rng = np.random.default_rng(prompt_seed)  # the same prompts on every rank; each takes its share
    os.makedirs(args.out, exist_ok=True)
    samples = SampleLog(os.path.join(args.out, "samples.jsonl"))
    print(f"{config.algo}: {args.iterations} iterations of {config.batch_size} responses, "
          f"{trainer.world.describe()}")
    rows = []
    for iteration in range(1, args.iterations + 1):
        stats = trainer.iteration([prompts[i] for i in rng.integers(0, len(prompts), config.prompts_per_iteration)])
        rows.append({"iteration": iteration, **stats})
        print(progress_line(iteration, args.iterations, stats))
        if args.samples_every and iteration % args.samples_every == 0 and trainer.world.is_root:
            samples.add(iteration, trainer.last_samples)  # rank 0's share of the responses
    if not trainer.world.is_root:  # the other ranks hold the same policy and figures
        return
    write_csv(rows, os.path.join(args.out, "rlhf_log.csv"))
    path = os.path.join(args.out, "policy.npz")
    save_checkpoint(path, policy.params, policy.config.to_dict(),
                    extra={"tokenizer": tokenizer_record(tokenizer), "template": template.text}, kind="gpt")
    print(f"wrote {path} and {os.path.join(args.out, 'rlhf_log.csv')}")

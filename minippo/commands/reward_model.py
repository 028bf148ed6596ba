"""``minippo reward-model``: train a reward model on preference pairs (JSONL: prompt, chosen, rejected).

Ctrl-C or SIGTERM writes a resumable checkpoint to --out and prints the command that continues it
(``--resume``, bit-identically; ``minippo.runs``).
"""
from dataclasses import dataclass

import numpy as np

from minippo import runs
from minippo.checks import integer, open_fraction, optional, positive, setting
from minippo.commands import options, preference_split
from minippo.commands.models import (
    add_template_option,
    command_template,
    load_policy_and_tokenizer,
    policy_template,
)
from minippo.distributed import world
from minippo.rewards.reward_model import (
    RewardModel,
    normalize_under_policy,
    preference_accuracy,
    train_reward_model,
)
from minippo.rlhf.config import RLHFConfig
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_pair_tokens, pair_memory


@dataclass
class RewardModelRun:
    """The settings of ``minippo reward-model``."""

    steps: int = setting(150, "training steps", integer(1))
    batch_size: int = setting(32, "preference pairs per step", integer(1))
    learning_rate: float = setting(1e-3, "learning rate", positive)
    test_fraction: float = setting(0.15, "fraction of the prompts of --data held out, with all their pairs",
                                   open_fraction)
    normalize_samples: int = setting(256, "responses sampled from the policy (the reference of later RL) to set the "
                                     "scores' mean to 0 and std to 1; 0: no normalisation", integer(0))
    max_new_tokens: int = setting(None, f"length limit of those responses (none: {RLHFConfig.max_new_tokens}, as "
                                  "rlhf, or less if the shortest prompt leaves less room)", optional(integer(1)))
    seed: int = setting(0, "seed of the run: the held-out split, the head and the batch order derive from it",
                        integer(0))


def register(subparsers):
    parser = subparsers.add_parser(
        "reward-model",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model -log σ(r(chosen) - r(rejected)) whose trunk starts from a policy "
        "checkpoint. Pairs are JSONL lines {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}; a random "
        "--test-fraction of the prompts is held out, with all their pairs, to report preference accuracy. The "
        "model is then normalised to mean 0, std 1 on responses the policy samples to the training prompts. "
        "The settings run with are written beside --out as <name>.config.json, which --config reads back.",
    )
    parser.add_argument("--data", help="preference pairs, JSONL (default: the shipped pairs, with their test split)")
    parser.add_argument("--policy", required=True,
                        help="policy checkpoint or Hugging Face GPT-2 directory whose trunk (and tokenizer) the model "
                        "starts from")
    parser.add_argument("--out", default="runs/reward_model.npz",
                        help="output checkpoint (default: runs/reward_model.npz)")
    options.add_config_option(parser)
    options.add_setting_options(parser, RewardModelRun(), aliases={"learning_rate": ["--lr"]})
    add_template_option(parser)
    runs.add_run_options(parser, periodic=False)
    parser.set_defaults(func=run)


def normalization_prompts(prompts, tokenizer, block_size, max_new_tokens):
    """``(prompt texts, max_new_tokens)`` of the normalisation samples: the prompts that leave
    ``max_new_tokens`` of room in the context (None: as rlhf's default, or less so the shortest prompt fits).
    Checked before training, so that a bad setting fails now rather than after it."""
    lengths = [len(tokenizer.encode(prompt)) for prompt in prompts]
    if max_new_tokens is None:
        max_new_tokens = min(RLHFConfig.max_new_tokens, block_size - min(lengths))
    fitting = [prompt for prompt, length in zip(prompts, lengths) if 0 < length <= block_size - max_new_tokens]
    if max_new_tokens < 1 or not fitting:
        raise ValueError(f"no training prompt leaves room for responses of {max(1, max_new_tokens)} tokens in the "
                         f"policy's {block_size}-token context, to normalise the reward model on (set "
                         f"--max-new-tokens, or --normalize-samples 0)")
    return fitting, max_new_tokens


def run(args):
    config_path = options.config_beside(args.out)
    runs.check_outputs(args, files=[(args.out, "--out"), (config_path, "--out")])
    settings = options.apply_settings(RewardModelRun(), options.chosen_settings(args))
    split_seed, head_seed, order_seed, prompt_seed, sample_seed = spawn_seeds(settings.seed, 5)
    train, test = preference_split(args.data, settings.test_fraction, split_seed)
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    template = command_template(args.template, [(policy_template(args.policy), args.policy)])
    check_memory(pair_memory, {"--batch-size": settings.batch_size},
                 {"model": gpt_sizes(policy.config), "tokens": longest_pair_tokens(tokenizer, train), "reference": 0})
    if settings.normalize_samples:
        prompts = list(dict.fromkeys(template.prompt_text(pair["prompt"]) for pair in train))
        prompts, max_new_tokens = normalization_prompts(prompts, tokenizer, policy.config.block_size,
                                                        settings.max_new_tokens)
    model = RewardModel.from_policy(policy, tokenizer, seed=head_seed, template=template)
    print(f"training a reward model on {len(train):,} preference pairs for {settings.steps} steps, "
          f"{world().describe()}")
    with runs.Interrupt() as interrupt:
        train_reward_model(model, train, steps=settings.steps, batch_size=settings.batch_size,
                           learning_rate=settings.learning_rate, seed=order_seed, stop=interrupt.stop_after(world()),
                           checkpoint_path=args.out, resume_from=args.resume)
        if interrupt.stopped_at is None:  # (a Ctrl-C from here on waits for the checkpoint)
            print(f"held-out preference accuracy: {preference_accuracy(model, test):.3f} on {len(test)} pairs")
            if settings.normalize_samples:
                chosen = np.random.default_rng(prompt_seed).integers(0, len(prompts), settings.normalize_samples)
                raw = normalize_under_policy(model, policy, tokenizer, [prompts[i] for i in chosen], max_new_tokens,
                                             RLHFConfig.temperature, sample_seed)
                print(f"normalised on {settings.normalize_samples} responses of {args.policy}: raw scores "
                      f"{raw.mean():+.3f} ± {raw.std():.3f} become mean 0, std 1")
            if world().is_root:
                model.save(args.out)
                options.write_config(config_path, options.setting_values(settings))
    if interrupt.stopped_at is not None:
        return runs.interrupted(args, f"step {interrupt.stopped_at}", args.out)
    print(f"wrote {args.out}")

"""``minippo reward-model``: train a reward model on preference pairs (JSONL: prompt, chosen, rejected)."""
from dataclasses import dataclass

from minippo.checks import integer, open_fraction, positive, setting
from minippo.commands import check_output_path, options, preference_split
from minippo.commands.models import load_policy_and_tokenizer
from minippo.distributed import world
from minippo.rewards.reward_model import (
    RewardModel,
    preference_accuracy,
    train_reward_model,
)
from minippo.seeding import spawn_seeds


@dataclass
class RewardModelRun:
    """The settings of ``minippo reward-model``."""

    steps: int = setting(150, "training steps", integer(1))
    batch_size: int = setting(32, "preference pairs per step", integer(1))
    learning_rate: float = setting(1e-3, "learning rate", positive)
    test_fraction: float = setting(0.15, "held-out fraction of --data's pairs",
                                   open_fraction)
    seed: int = setting(0, "seed of the run: the held-out split, the head and the batch order derive from it",
                        integer(0))


def register(subparsers):
    parser = subparsers.add_parser(
        "reward-model",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model -log σ(r(chosen) - r(rejected)) whose trunk starts from a policy "
        "checkpoint. Pairs are JSONL lines {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}; a random "
        "--test-fraction is held out to report preference accuracy. The settings run with are written beside "
        "--out as <name>.config.json, which --config reads back.",
    )
    parser.add_argument("--data", help="preference pairs, JSONL (default: the shipped pairs, with their test split)")
    parser.add_argument("--policy", required=True,
                        help="policy checkpoint or Hugging Face GPT-2 directory whose trunk (and tokenizer) the model "
                        "starts from")
    parser.add_argument("--out", default="runs/reward_model.npz",
                        help="output checkpoint (default: runs/reward_model.npz)")
    options.add_config_option(parser)
    options.add_setting_options(parser, RewardModelRun(), aliases={"learning_rate": ["--lr"]})
    parser.set_defaults(func=run)


def run(args):
    check_output_path(args.out, "--out")
    settings = options.apply_settings(RewardModelRun(), options.chosen_settings(args))
    split_seed, head_seed, order_seed = spawn_seeds(settings.seed, 3)
    train, test = preference_split(args.data, settings.test_fraction, split_seed)
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    model = RewardModel.from_policy(policy, tokenizer, seed=head_seed)
    print(f"training a reward model on {len(train):,} preference pairs for {settings.steps} steps, "
          f"{world().describe()}")
    train_reward_model(model, train, steps=settings.steps, batch_size=settings.batch_size,
                       learning_rate=settings.learning_rate, seed=order_seed)
    print(f"held-out preference accuracy: {preference_accuracy(model, test):.3f} on {len(test)} pairs")
    if world().is_root:
        model.save(args.out)
        options.write_config(options.config_beside(args.out), options.setting_values(settings))
    print(f"wrote {args.out}")

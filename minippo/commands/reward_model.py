"""``minippo reward-model``: train a reward model on preference pairs (JSONL: prompt, chosen, rejected).

Ctrl-C or SIGTERM writes a resumable checkpoint to --out and prints the command that continues it
(``--resume``, bit-identically; ``minippo.runs``).
"""
from minippo import runs
from minippo.commands import integer_option, preference_split
from minippo.commands.models import load_policy_and_tokenizer
from minippo.distributed import world
from minippo.rewards.reward_model import (
    RewardModel,
    preference_accuracy,
    train_reward_model,
)
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_pair_tokens, pair_memory


def register(subparsers):
    parser = subparsers.add_parser(
        "reward-model",
        help="train a Bradley-Terry reward model on preference pairs",
        description="Train a reward model -log σ(r(chosen) - r(rejected)) whose trunk starts from a policy "
        "checkpoint. Pairs are JSONL lines {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...}; a random "
        "--test-fraction is held out to report preference accuracy.",
    )
    parser.add_argument("--data", help="preference pairs, JSONL (default: the shipped pairs, with their test split)")
    parser.add_argument("--policy", required=True,
                        help="policy checkpoint or Hugging Face GPT-2 directory whose trunk (and tokenizer) the model "
                        "starts from")
    parser.add_argument("--out", default="runs/reward_model.npz",
                        help="output checkpoint (default: runs/reward_model.npz)")
    parser.add_argument("--steps", type=integer_option(1), default=150, help="training steps (default: 150)")
    parser.add_argument("--batch-size", type=integer_option(1), default=32, help="pairs per step (default: 32)")
    parser.add_argument("--learning-rate", "--lr", type=float, default=1e-3, help="learning rate (default: 1e-3)")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="held-out fraction for --data (default: 0.15)")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    runs.add_run_options(parser, periodic=False)
    parser.set_defaults(func=run)


def run(args):
    runs.check_outputs(args, files=[(args.out, "--out")])
    split_seed, head_seed, order_seed = spawn_seeds(args.seed, 3)
    train, test = preference_split(args.data, args.test_fraction, split_seed)
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    check_memory(pair_memory, {"--batch-size": args.batch_size},
                 {"model": gpt_sizes(policy.config), "tokens": longest_pair_tokens(tokenizer, train), "reference": 0})
    model = RewardModel.from_policy(policy, tokenizer, seed=head_seed)
    print(f"training a reward model on {len(train):,} preference pairs for {args.steps} steps, {world().describe()}")
    with runs.Interrupt() as interrupt:
        train_reward_model(model, train, steps=args.steps, batch_size=args.batch_size,
                           learning_rate=args.learning_rate, seed=order_seed, stop=interrupt.stop_after(world()),
                           checkpoint_path=args.out, resume_from=args.resume)
        if interrupt.stopped_at is None:  # (a Ctrl-C from here on waits for the checkpoint)
            print(f"held-out preference accuracy: {preference_accuracy(model, test):.3f} on {len(test)} pairs")
            if world().is_root:
                model.save(args.out)
    if interrupt.stopped_at is not None:
        return runs.interrupted(args, f"step {interrupt.stopped_at}", args.out)
    print(f"wrote {args.out}")

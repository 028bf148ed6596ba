"""``minippo export``: minippo checkpoints as Hugging Face GPT-2 directories.

    minippo export --policy runs/demo/policy.npz --reward runs/demo/reward_model.npz --out runs/demo/hf

The first model given is written to ``--out``: the policy as a ``GPT2LMHeadModel``; the reward model as
a ``GPT2ForSequenceClassification`` with one label, in ``--out/reward_model`` when a policy is exported
too.  Each directory records its tokenizer (see ``docs/huggingface.md``).
"""
import os

from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.text.tokenizer import ByteTokenizer

REWARD_SUBDIRECTORY = "reward_model"


def register(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="write checkpoints as Hugging Face GPT-2 directories (transformers loads them)",
        description="Write a policy checkpoint as a GPT2LMHeadModel directory and/or a reward-model checkpoint "
        "as a GPT2ForSequenceClassification directory (config.json + model.safetensors).",
    )
    parser.add_argument("--policy", metavar="CKPT", help="policy checkpoint (from pretrain, rlhf or the demo)")
    parser.add_argument("--reward", metavar="CKPT", help="reward-model checkpoint (from reward-model or the demo)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the model directory to write")
    parser.set_defaults(func=run)


def run(args):
    if args.policy is None and args.reward is None:
        raise ValueError("give --policy, --reward or both")
    if os.path.isfile(args.out):
        raise ValueError(f"--out {args.out} is a file, not a directory")
    policy = None if args.policy is None else load_model(args.policy)
    reward = None if args.reward is None else RewardModel.load(args.reward)
    if policy is not None:
        policy.save_pretrained(args.out, tokenizer=ByteTokenizer())
        print(f"policy -> {args.out} (GPT2LMHeadModel)")
    if reward is not None:
        directory = args.out if policy is None else os.path.join(args.out, REWARD_SUBDIRECTORY)
        reward.save_pretrained(directory)
        print(f"reward model -> {directory} (GPT2ForSequenceClassification)")
    return 0

"""``minippo export``: minippo checkpoints as Hugging Face GPT-2 directories.

    minippo export --policy runs/demo/policy.npz --reward runs/demo/reward_model.npz --out runs/demo/hf

The first model given is written to ``--out``: the policy as a ``GPT2LMHeadModel``; the reward model as
a ``GPT2ForSequenceClassification`` with one label, in ``--out/reward_model`` when a policy is exported
too.  Each directory gets the files of the tokenizer its model was trained with, in GPT-2's format
(``vocab.json``, ``merges.txt``, ``tokenizer_config.json``), so that ``transformers.AutoTokenizer`` gives
minippo's ids (see ``docs/huggingface.md``).  A model directory is accepted as input too.
"""
import os

from minippo.commands.models import load_policy_and_tokenizer, load_reward_model

REWARD_SUBDIRECTORY = "reward_model"


def register(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="write checkpoints as Hugging Face GPT-2 directories with their tokenizer (transformers loads them)",
        description="Write a policy checkpoint as a GPT2LMHeadModel directory and/or a reward-model checkpoint "
        "as a GPT2ForSequenceClassification directory (config.json + model.safetensors + the tokenizer's "
        "vocab.json, merges.txt and tokenizer_config.json).",
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
    policy, tokenizer = (None, None) if args.policy is None else load_policy_and_tokenizer(args.policy)
    reward = None if args.reward is None else load_reward_model(args.reward)
    if policy is not None:
        policy.save_pretrained(args.out, tokenizer=tokenizer)
        print(f"policy -> {args.out} (GPT2LMHeadModel)")
    if reward is not None:
        directory = args.out if policy is None else os.path.join(args.out, REWARD_SUBDIRECTORY)
        reward.save_pretrained(directory)
        print(f"reward model -> {directory} (GPT2ForSequenceClassification)")
    return 0

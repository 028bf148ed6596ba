"""``minippo tokenizer train``: learn a BPE tokenizer from a text file; and ``--tokenizer``, the option every
command that creates a model from text takes.

``--tokenizer`` names one of

- ``byte``: :class:`~minippo.text.tokenizer.ByteTokenizer`, one token per UTF-8 byte (the default);
- ``bpe:FILE``: a :class:`~minippo.text.bpe.BPETokenizer` written by ``minippo tokenizer train``;
- a Hugging Face tokenizer directory (``vocab.json`` + ``merges.txt``, or ``tokenizer.json``), read by
  :func:`minippo.hf.directory_tokenizer`.

The model's checkpoint records the tokenizer (:func:`minippo.text.gpt2.tokenizer_record`), so every later
stage (reward model, RLHF, DPO, value) uses the same one; :func:`check_same_tokenizer` refuses a policy and
a reward model that were trained with different tokenizers.
"""
import os

from minippo.commands import integer_option
from minippo.hf import directory_tokenizer
from minippo.runs import check_output_file
from minippo.text.bpe import BPETokenizer
from minippo.text.files import read_text
from minippo.text.gpt2 import BYTE_RECORD, tokenizer_record
from minippo.text.tokenizer import NUM_BYTES, SPECIAL_TOKENS, ByteTokenizer

BPE_PREFIX = "bpe:"
TOKENIZER_FORMS = f"{BYTE_RECORD}, {BPE_PREFIX}FILE or a Hugging Face tokenizer directory"


def add_tokenizer_option(parser):
    """Add ``--tokenizer`` to the parser of a command that creates a model from text."""
    parser.add_argument("--tokenizer", metavar="SPEC",
                        help=f"tokenizer of the new model: {TOKENIZER_FORMS} (default: {BYTE_RECORD}); "
                             "recorded in its checkpoint, so later stages use the same one")


def load_tokenizer(spec):
    """The tokenizer ``--tokenizer spec`` names (see the module docstring; None: ``byte``); errors name the
    option."""
    if spec is None or spec == BYTE_RECORD:
        return ByteTokenizer()
    if spec.startswith(BPE_PREFIX):
        path = spec[len(BPE_PREFIX):]
        if not os.path.isfile(path):
            raise ValueError(f"--tokenizer {spec}: no such file {path!r}")
        return BPETokenizer.load(path)
    if os.path.isdir(spec):
        return directory_tokenizer(spec)
    raise ValueError(f"--tokenizer must be {TOKENIZER_FORMS}, got {spec!r}")


def check_same_tokenizer(policy_tokenizer, policy_path, reward_tokenizer, reward_path):
    """ValueError naming both files when a policy and a reward model were trained with different tokenizers."""
    if tokenizer_record(policy_tokenizer) != tokenizer_record(reward_tokenizer):
        raise ValueError(f"the policy {policy_path} and the reward model {reward_path} use different tokenizers "
                         f"({describe(policy_tokenizer)} and {describe(reward_tokenizer)}); train the reward "
                         f"model from this policy (minippo reward-model --policy {policy_path})")


def describe(tokenizer):
    """A short name of a tokenizer for messages: ``"byte"`` or ``"BPE of 1,000 tokens"``."""
    if type(tokenizer) is ByteTokenizer:
        return BYTE_RECORD
    return f"{type(tokenizer).__name__} of {tokenizer.vocab_size:,} tokens"


def register(subparsers):
    parser = subparsers.add_parser(
        "tokenizer",
        help="train a byte-level BPE tokenizer on your text (for pretrain --tokenizer bpe:FILE)",
        description="Tokenizer tools. `minippo tokenizer train --data FILE --vocab-size N --out FILE` learns "
        "byte-pair merges from a UTF-8 text file (GPT-2's pre-tokenisation; any text still encodes, byte by "
        "byte at worst); `minippo pretrain --tokenizer bpe:FILE` then trains a model with it.",
    )
    actions = parser.add_subparsers(dest="action", metavar="<action>")
    actions.required = True
    train = actions.add_parser("train", help="learn a BPE tokenizer from a text file",
                               description="Learn byte-pair merges from a UTF-8 text file until the vocabulary "
                               f"has --vocab-size tokens ({NUM_BYTES} bytes and {len(SPECIAL_TOKENS)} special "
                               "tokens included), and write them as JSON.")
    train.add_argument("--data", required=True, help="UTF-8 text file to learn the merges from")
    train.add_argument("--vocab-size", type=integer_option(NUM_BYTES + len(SPECIAL_TOKENS)), required=True,
                       help=f"tokens of the vocabulary, at least {NUM_BYTES + len(SPECIAL_TOKENS)}")
    train.add_argument("--out", required=True, help="output tokenizer file (JSON), for --tokenizer bpe:FILE")
    train.set_defaults(func=run_train)


def run_train(args):
    check_output_file(args.out, "--out")
    text = read_text(args.data)
    tokenizer = BPETokenizer.train(text, args.vocab_size)
    tokenizer.save(args.out)
    sample = text[:1_000_000]
    ratio = len(sample.encode("utf-8")) / max(1, len(tokenizer.encode(sample)))
    stopped = "" if tokenizer.vocab_size == args.vocab_size else \
        f" (no pair of tokens occurs twice beyond that, so not {args.vocab_size:,})"
    print(f"wrote {args.out}: {tokenizer.vocab_size:,} tokens{stopped}, {ratio:.2f} bytes per token on {args.data}")
    print(f"use it with: minippo pretrain --data {args.data} --tokenizer {BPE_PREFIX}{args.out}")

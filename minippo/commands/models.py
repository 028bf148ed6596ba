"""What ``--policy`` and ``--reward`` name on the command line: a minippo checkpoint (``.npz``) or a
Hugging Face GPT-2 model directory, recognised by its ``config.json``.  Every command loads them here.

A model directory brings its tokenizer files (:func:`minippo.hf.directory_tokenizer`); a minippo
checkpoint uses the tokenizer it was trained with, which it records (``"byte"`` for the byte tokenizer,
else the tokenizer's GPT-2 files: :func:`minippo.text.gpt2.tokenizer_record`).
"""
import json
import os

import numpy as np

from minippo.hf import directory_tokenizer, load_gpt2
from minippo.hf.config import CONFIG_FILE
from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.rewards.rule_specs import RULE_REWARD_KINDS, parse_rule_reward
from minippo.text.gpt2 import BYTE_RECORD, tokenizer_from_record


def is_model_directory(path):
    """True for a directory with a ``config.json`` (a Hugging Face model directory)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def checkpoint_tokenizer(path):
    """The tokenizer a minippo checkpoint records (checkpoints that record none were trained with bytes).
    Reads only the checkpoint's metadata; call it on a checkpoint that has been loaded."""
    with np.load(path, allow_pickle=False) as archive:
        extra = json.loads(str(archive["meta"]))["extra"]
    return tokenizer_from_record(extra.get("tokenizer", BYTE_RECORD), f"checkpoint {str(path)!r}")


def load_policy_and_tokenizer(path):
    """``(GPT, tokenizer)`` from a model directory or a minippo checkpoint."""
    if is_model_directory(path):
        model, tokenizer = load_gpt2(path), directory_tokenizer(path)
    else:
        model, tokenizer = load_model(path), checkpoint_tokenizer(path)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"{path}: the tokenizer has {tokenizer.vocab_size} tokens, more than the model's "
                         f"vocabulary of {model.config.vocab_size}")
    return model, tokenizer


def load_reward_model(path):
    """A :class:`~minippo.rewards.reward_model.RewardModel` from a model directory or a minippo checkpoint."""
    return RewardModel.from_pretrained(path) if is_model_directory(path) else RewardModel.load(path)


def load_reward(spec):
    """A reward callable: a reward model (a model directory or a ``*.npz`` checkpoint) or a rule spec such
    as ``rouge:refs.txt`` (see :func:`minippo.rewards.rule_specs.parse_rule_reward`)."""
    kind = spec.partition(":")[0].partition(".")[0].strip().lower()  # "rouge" of "rouge.char:refs.txt"
    if is_model_directory(spec) or (spec.endswith(".npz") and kind not in RULE_REWARD_KINDS):
        return load_reward_model(spec)
    return parse_rule_reward(spec)


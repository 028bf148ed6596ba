"""What ``--policy`` and ``--reward`` name on the command line: a minippo checkpoint (``.npz``) or a
Hugging Face GPT-2 model directory, recognised by its ``config.json``.

A model directory brings its tokenizer (:func:`minippo.hf.directory_tokenizer`); a minippo checkpoint
uses the byte tokenizer every minippo command trains with (its checkpoints record ``tokenizer: "byte"``).
"""
import os

from minippo.hf import directory_tokenizer, load_gpt2
from minippo.hf.config import CONFIG_FILE
from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.text.tokenizer import ByteTokenizer


def is_model_directory(path):
    """True for a directory with a ``config.json`` (a Hugging Face model directory)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def load_policy_and_tokenizer(path):
    """``(GPT, tokenizer)`` from a model directory or a minippo checkpoint."""
    if is_model_directory(path):
        return load_gpt2(path), directory_tokenizer(path)
    return load_model(path), ByteTokenizer()


def load_reward_model(path):
    """A :class:`~minippo.rewards.reward_model.RewardModel` from a model directory or a minippo checkpoint."""
    return RewardModel.from_pretrained(path) if is_model_directory(path) else RewardModel.load(path)

"""What ``--policy`` and ``--reward`` name on the command line: a minippo checkpoint (``.npz``) or a
Hugging Face GPT-2 model directory, recognised by its ``config.json``.  Every command loads them here.

A model directory brings its tokenizer files (:func:`minippo.hf.directory_tokenizer`); a minippo
checkpoint uses the tokenizer it was trained with, which it records (``"byte"`` for the byte tokenizer,
else the tokenizer's GPT-2 files: :func:`minippo.text.gpt2.tokenizer_record`).  Policy and reward-model
checkpoints also record the prompt template their text was laid out with
(:class:`~minippo.text.template.Template`); :func:`load_policy_and_reward` refuses a policy and a reward
model whose tokenizers or templates differ, and :func:`command_template` the template every command uses.
"""
import json
import os

import numpy as np

from minippo.commands.tokenizer import check_same_tokenizer
from minippo.hf import directory_tokenizer, load_gpt2
from minippo.hf.config import CONFIG_FILE
from minippo.pretrain import load_model
from minippo.rewards.reward_model import RewardModel
from minippo.rewards.rule_specs import RULE_REWARD_KINDS, parse_rule_reward
from minippo.text.gpt2 import BYTE_RECORD, tokenizer_from_record
from minippo.text.template import Template, agreed_template


def is_model_directory(path):
    """True for a directory with a ``config.json`` (a Hugging Face model directory)."""
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def checkpoint_extra(path):
    """The ``extra`` metadata of a minippo checkpoint.  Reads only the metadata; call it on a checkpoint that
    has been loaded."""
    with np.load(path, allow_pickle=False) as archive:
        return json.loads(str(archive["meta"]))["extra"]


def checkpoint_tokenizer(path):
    """The tokenizer a minippo checkpoint records (checkpoints that record none were trained with bytes)."""
    return tokenizer_from_record(checkpoint_extra(path).get("tokenizer", BYTE_RECORD), f"checkpoint {str(path)!r}")


def policy_template(path):
    """The prompt template a policy checkpoint records, or None (a model directory, a pretrained checkpoint)."""
    if is_model_directory(path):
        return None
    recorded = checkpoint_extra(path).get("template")
    try:
        return None if recorded is None else Template(recorded)
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(path)!r}: the recorded {error}") from None


def add_template_option(parser, default="default: the one the policy or reward model records, else "
                        "'Q: {prompt} A: {response}'"):
    """Add ``--template`` to the parser of a command that lays out prompts (and responses) as text;
    ``default`` says what is used without it."""
    parser.add_argument("--template", metavar="TEXT",
                        help=f"prompt template, e.g. '问：{{prompt}}\\n答：{{response}}' ({default}); files hold raw "
                             "prompts")


def command_template(option, recorded):
    """The template a command uses: ``--template`` (``option``, or None) if given, else the one the models
    record, ``recorded`` being ``(template or None, path)`` pairs; all must agree (see
    :func:`~minippo.text.template.agreed_template`)."""
    given = None if option is None else Template(option.replace("\\n", "\n"))
    return agreed_template([(given, "--template"), *recorded])


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


def load_policy_and_reward(policy_path, reward_spec):
    """``(policy, tokenizer, reward)`` for ``--policy`` and ``--reward``; a reward model must use the policy's
    tokenizer (ValueError naming both otherwise), as the policy's text is what it scores."""
    policy, tokenizer = load_policy_and_tokenizer(policy_path)
    reward = load_reward(reward_spec)
    if isinstance(reward, RewardModel):
        check_same_tokenizer(tokenizer, policy_path, reward.tokenizer, reward_spec)
    return policy, tokenizer, reward


def reward_template(reward, spec):
    """``(template or None, spec)``: what a reward (a reward model or a rule) records about its template."""
    return (reward.template if isinstance(reward, RewardModel) else None), spec


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


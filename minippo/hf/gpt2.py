"""Hugging Face GPT-2 model directories in and out: the policy, the reward model and a value head.

A directory holds ``config.json`` (see :mod:`minippo.hf.config`) and the weights (see
:mod:`minippo.hf.weights`), named as in ``transformers``:

* a policy is a ``GPT2LMHeadModel``: ``transformer.*`` (the names of minippo's GPT), the LM head tied
  to ``transformer.wte.weight``.  A ``GPT2Model`` checkpoint, whose names lack ``transformer.``, loads too;
* a reward model is a ``GPT2ForSequenceClassification`` with one label: ``transformer.*`` and
  ``score.weight`` (1, n_embd), no bias, the score read at the last token that is not padding.
  minippo's reward is ``gain · score + bias``; the pair is kept in ``config.json`` under
  ``reward_normalization`` (``{"gain": …, "bias": …}``), and the bias of minippo's score head is folded
  into it on saving (r = h·w + b becomes h·w, with bias ← gain · b + bias), so other libraries read
  the plain ``GPT2ForSequenceClassification`` score and minippo the same reward as before;
* a value head saved beside a policy goes to ``value_head.safetensors``, named as TRL names it:
  ``v_head.summary.weight`` (1, n_embd) and ``v_head.summary.bias`` (1,);
* the tokenizer goes beside the model as GPT-2's files (``vocab.json``, ``merges.txt``,
  ``tokenizer_config.json``), which transformers reads with the same ids; :func:`directory_tokenizer`
  reads a directory's tokenizer back.

Weights that the file holds in the model's dtype are memory-mapped copy-on-write, so a loaded model
shares the file's pages until it is trained (see :mod:`minippo.hf.safetensors`).  Do not overwrite the
files in place while such a model is in use; minippo's own saving replaces files atomically, which is safe.
"""
import json
import os

import numpy as np

from minippo.atomic import atomic_write
from minippo.checks import finite_number
from minippo.hf.config import (
    CONFIG_FILE,
    gpt_config_from_hf,
    gpt_config_to_hf,
    read_config,
)
from minippo.hf.safetensors import load_safetensors, save_safetensors
from minippo.hf.weights import SAFETENSORS_FILE, load_weights
from minippo.nn.gpt import CHECKPOINT_BUFFER_SUFFIXES, GPT, parameter_shapes
from minippo.nn.heads import ValueHead
from minippo.nn.module import check_dtype, finite_as
from minippo.text.gpt2 import GPT2Tokenizer
from minippo.text.tokenizer import ByteTokenizer

TRUNK_PREFIX = "transformer."
TRUNK_PARTS = ("wte.", "wpe.", "h.", "ln_f.")  # the first part of a GPT2Model tensor name
SCORE_WEIGHT = "score.weight"
NORMALIZATION_KEY = "reward_normalization"
VALUE_HEAD_FILE = "value_head.safetensors"
VALUE_HEAD_NAMES = ("v_head.summary.weight", "v_head.summary.bias")
SAFETENSORS_METADATA = {"format": "pt"}  # transformers refuses a file without it
BYTE_TOKENIZER_FILES = ByteTokenizer().gpt2_files()


def trunk_tensors(tensors, source):
    """The tensors of a Hugging Face GPT-2 checkpoint under minippo's names, with the head tensors
    (anything outside the transformer) kept as they are.

    Adds ``transformer.`` to GPT2Model names, drops the causal-mask buffers, and drops an
    ``lm_head.weight`` after checking that it equals the token embedding (the head is tied).
    """
    named = {}
    for name, array in tensors.items():
        if name.endswith(CHECKPOINT_BUFFER_SUFFIXES):
            continue
        ours = TRUNK_PREFIX + name if name.startswith(TRUNK_PARTS) else name
        if ours in named:
            raise ValueError(f"{source}: holds both {ours!r} and {name!r}")
        named[ours] = array
    lm_head = named.pop("lm_head.weight", None)
    embedding = named.get(TRUNK_PREFIX + "wte.weight")
    if lm_head is not None and (embedding is None or lm_head.shape != embedding.shape
                                or not np.array_equal(lm_head, embedding)):
        raise ValueError(f"{source}: tensor 'lm_head.weight' differs from 'transformer.wte.weight'; "
                         f"minippo's LM head is tied to the token embedding")
    return named


def converted(tensors, shapes, dtype, source):
    """``tensors`` (exactly the names of ``shapes``) in ``dtype``, each checked for shape and finiteness.

    An array already in ``dtype`` is returned as it is (a memory-mapped one stays mapped).
    """
    missing, extra = sorted(shapes.keys() - tensors.keys()), sorted(tensors.keys() - shapes.keys())
    if missing:
        raise ValueError(f"{source}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)")
    if extra:
        raise ValueError(f"{source}: tensor {extra[0]!r} is not part of the model ({len(extra)} such in all)")
    result = {}
    for name, shape in shapes.items():
        array = tensors[name]
        if array.shape != shape:
            raise ValueError(f"{source}: tensor {name!r} has shape {array.shape}, the config needs {shape}")
        if array.dtype.kind != "f":
            raise ValueError(f"{source}: tensor {name!r} has dtype {array.dtype}, not floating point")
        if not finite_as(array, dtype):
            raise ValueError(f"{source}: tensor {name!r} holds NaN or inf (in {dtype})")
        result[name] = array.astype(dtype, copy=False)
    return result


def load_trunk(directory, dtype, mmap_file, head_shapes):
    """``(GPT, head tensors, config values)`` of a model directory; ``head_shapes`` names the tensors
    beside the transformer that the model class has (none for the LM, ``score.weight`` for a reward model)."""
    dtype = check_dtype(dtype)
    values = read_config(directory)
    config = gpt_config_from_hf(values, dtype, os.path.join(os.fspath(directory), CONFIG_FILE))
    tensors, source = load_weights(directory, mmap_file)
    shapes = {**parameter_shapes(config), **head_shapes(config)}
    weights = converted(trunk_tensors(tensors, source), shapes, dtype, source)
    # the arrays themselves, so memory-mapped weights stay mapped; no random initialisation first
    model = GPT(config, params={name: weights.pop(name) for name in parameter_shapes(config)})
    return model, weights, values


def load_gpt2(directory, dtype=np.float32, mmap_file=True):
    """A :class:`~minippo.nn.gpt.GPT` from a Hugging Face GPT-2 directory (``GPT2LMHeadModel`` or
    ``GPT2Model`` weights), in ``dtype`` (float32 or float64)."""
    model, _, _ = load_trunk(directory, dtype, mmap_file, lambda config: {})
    return model


def save_gpt2(model, directory, tokenizer=None):
    """Write ``model`` as a ``GPT2LMHeadModel`` directory: ``config.json`` and ``model.safetensors``
    in the model's dtype, each atomically.  ``tokenizer`` (optional) writes its files beside them in GPT-2's
    format (:meth:`minippo.text.tokenizer.Tokenizer.save_pretrained`) and its EOS and padding ids into
    ``config.json``."""
    save_model_files(directory, model.params, model.config, "GPT2LMHeadModel", tokenizer, {})


def save_model_files(directory, tensors, config, architecture, tokenizer, extra_config):
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    ids = {} if tokenizer is None else {"eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}
    values = {**gpt_config_to_hf(config, architecture, **ids), **extra_config}
    save_safetensors(os.path.join(directory, SAFETENSORS_FILE), tensors, SAFETENSORS_METADATA)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    with atomic_write(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as file:
        json.dump(values, file, indent=2)
        file.write("\n")


def directory_tokenizer(directory):
    """The tokenizer a model directory brings: its GPT-2 tokenizer files (``vocab.json`` + ``merges.txt``, or
    ``tokenizer.json``) read by :meth:`GPT2Tokenizer.from_pretrained`.  Files that describe minippo's
    :class:`~minippo.text.tokenizer.ByteTokenizer` (what exporting a byte-level model writes) give a
    ByteTokenizer, which computes the same ids without BPE."""
    tokenizer = GPT2Tokenizer.from_pretrained(directory)
    return ByteTokenizer() if tokenizer.gpt2_files() == BYTE_TOKENIZER_FILES else tokenizer


def save_reward_model(reward_model, directory):
    """Write a :class:`~minippo.rewards.reward_model.RewardModel` as a ``GPT2ForSequenceClassification``
    directory with one label (see the module docstring for how gain and bias are kept)."""
    head = reward_model.head.params
    tensors = {**reward_model.trunk.params, SCORE_WEIGHT: head["weight"].T}  # (C, 1) -> (1, C)
    normalization = {"gain": reward_model.gain, "bias": reward_model.gain * float(head["bias"][0]) + reward_model.bias}
    extra = {NORMALIZATION_KEY: normalization, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}
    save_model_files(directory, tensors, reward_model.trunk.config, "GPT2ForSequenceClassification",
                     reward_model.tokenizer, extra)


def load_reward_model(directory, dtype=np.float32, tokenizer=None, mmap_file=True):
    """A :class:`~minippo.rewards.reward_model.RewardModel` from a ``GPT2ForSequenceClassification``
    directory with one label; ``tokenizer`` defaults to :func:`directory_tokenizer`."""
    # imported here, not at the top: reward_model.py imports this module
    from minippo.rewards.reward_model import RewardModel

    trunk, head, values = load_trunk(directory, dtype, mmap_file,
                                     lambda config: {SCORE_WEIGHT: (1, config.n_embd)})
    source = os.path.join(os.fspath(directory), CONFIG_FILE)
    labels = values.get("id2label")
    if labels is not None and (not isinstance(labels, dict) or len(labels) != 1):
        raise ValueError(f"{source}: id2label = {json.dumps(labels)}: a reward model has one label")
    normalization = values.get(NORMALIZATION_KEY, {"gain": 1.0, "bias": 0.0})
    if not isinstance(normalization, dict) or set(normalization) != {"gain", "bias"}:
        raise ValueError(f"{source}: {NORMALIZATION_KEY} = {json.dumps(normalization)}: must be "
                         f"{{\"gain\": number, \"bias\": number}}")
    model = RewardModel(trunk, tokenizer or directory_tokenizer(directory))
    model.head.params["weight"][...] = head[SCORE_WEIGHT].T  # (1, C) -> (C, 1)
    model.gain = finite_number(normalization["gain"], f"{NORMALIZATION_KEY}.gain in {source}")
    model.bias = finite_number(normalization["bias"], f"{NORMALIZATION_KEY}.bias in {source}")
    return model


def save_value_head(head, directory):
    """Write a :class:`~minippo.nn.heads.ValueHead` to ``directory/value_head.safetensors`` (TRL's names)."""
    weight, bias = VALUE_HEAD_NAMES
    save_safetensors(os.path.join(os.fspath(directory), VALUE_HEAD_FILE),
                     {weight: head.params["weight"].T, bias: head.params["bias"]}, SAFETENSORS_METADATA)


def load_value_head(directory, dtype=np.float32):
    """The :class:`~minippo.nn.heads.ValueHead` saved by :func:`save_value_head` in ``directory``."""
    dtype = check_dtype(dtype)
    path = os.path.join(os.fspath(directory), VALUE_HEAD_FILE)
    tensors = load_safetensors(path, mmap_file=False)
    weight_name, bias_name = VALUE_HEAD_NAMES
    weight = tensors.get(weight_name)
    if weight is None or weight.ndim != 2 or weight.shape[0] != 1:
        raise ValueError(f"{path}: tensor {weight_name!r} must be present with shape (1, n_embd)")
    weights = converted(tensors, {weight_name: weight.shape, bias_name: (1,)}, dtype, path)
    head = ValueHead(weight.shape[1], dtype)
    head.load_state_dict({"weight": weights[weight_name].T, "bias": weights[bias_name]})
    return head

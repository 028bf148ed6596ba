"""``config.json`` of a Hugging Face GPT-2 directory <-> :class:`~minippo.nn.gpt.GPTConfig`.

minippo's GPT is exactly GPT-2 with its default choices, so a config is read only when minippo computes
the same function: every field that would change the model to something minippo does not implement
is refused with an error naming the field and its value, never approximated.

=================================  ==============================================================
Hugging Face field                 minippo
=================================  ==============================================================
``vocab_size``                     ``GPTConfig.vocab_size``
``n_positions``                    ``GPTConfig.block_size``
``n_embd``, ``n_layer``, ``n_head``  the same names
``layer_norm_epsilon``             must be 1e-5, the ε of minippo's LayerNorm
``activation_function``            ``gelu_new`` (or ``gelu_pytorch_tanh``): GPT-2's tanh GELU
``n_inner``                        null or 4 · n_embd
``tie_word_embeddings``            true: the LM head is the token embedding
``scale_attn_weights``             true: scores divided by √head_size
``scale_attn_by_inverse_layer_idx``, ``reorder_and_upcast_attn``, ``add_cross_attention``: false
=================================  ==============================================================

Dropout rates are ignored (minippo never drops out; an exported config says 0.0).  Fields missing
from a config take Hugging Face's ``GPT2Config`` defaults, except the five sizes, which must be there.
"""
import json
import os

import numpy as np

from minippo.checks import is_integer, is_real
from minippo.nn.gpt import GPTConfig
from minippo.nn.layers import LAYERNORM_EPS
from minippo.text.files import parse_json, read_text

CONFIG_FILE = "config.json"
TANH_GELU_NAMES = ("gelu_new", "gelu_pytorch_tanh")
SIZE_FIELDS = {"vocab_size": "vocab_size", "n_positions": "block_size", "n_embd": "n_embd",
               "n_layer": "n_layer", "n_head": "n_head"}  # Hugging Face name -> GPTConfig name
# fields minippo honours only at one value (Hugging Face's default unless noted), and that value
REQUIRED_VALUES = {"scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
                   "reorder_and_upcast_attn": False, "add_cross_attention": False,
                   "tie_word_embeddings": True}
REASONS = {
    "scale_attn_weights": "minippo always divides attention scores by √head_size",
    "scale_attn_by_inverse_layer_idx": "minippo does not scale attention by 1/(layer index + 1)",
    "reorder_and_upcast_attn": "minippo computes attention in the model's dtype, in GPT-2's order",
    "add_cross_attention": "minippo's GPT is a decoder without cross-attention",
    "tie_word_embeddings": "minippo's LM head is tied to the token embedding",
}


def read_config(directory):
    """The parsed ``config.json`` of a model directory (a dict)."""
    path = os.path.join(os.fspath(directory), CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{directory}: no {CONFIG_FILE}; a Hugging Face model directory has one")
    values = parse_json(read_text(path), path)  # a byte order mark dropped, a repeated key refused
    if not isinstance(values, dict):
        raise ValueError(f"{path}: must be a JSON object, got {type(values).__name__}")
    return values


def gpt_config_from_hf(values, dtype=np.float32, source=CONFIG_FILE):
    """The GPTConfig a Hugging Face GPT-2 config (a dict) describes, in ``dtype``.

    Raises ValueError naming ``source``, the field and its value when minippo cannot compute that model.
    """
    def refuse(field, reason):
        raise ValueError(f"{source}: {field} = {json.dumps(values.get(field))}: {reason}")

    if values.get("model_type") != "gpt2":
        refuse("model_type", "minippo reads GPT-2 models (model_type \"gpt2\") only")
    for field in SIZE_FIELDS:
        if field not in values:
            raise ValueError(f"{source}: the field {field} is missing")
        if not is_integer(values[field]) or values[field] < 1:
            refuse(field, "must be an integer >= 1")
    epsilon = values.get("layer_norm_epsilon", LAYERNORM_EPS)
    if not is_real(epsilon) or epsilon != LAYERNORM_EPS:
        refuse("layer_norm_epsilon", f"minippo's LayerNorm uses ε = {LAYERNORM_EPS}")
    if values.get("activation_function", "gelu_new") not in TANH_GELU_NAMES:
        refuse("activation_function", "minippo's MLP uses GPT-2's tanh GELU (gelu_new)")
    if values.get("n_inner") not in (None, 4 * values["n_embd"]):
        refuse("n_inner", f"minippo's MLP is 4 · n_embd = {4 * values['n_embd']} wide")
    for field, required in REQUIRED_VALUES.items():
        if values.get(field, required) != required:
            refuse(field, REASONS[field])
    return GPTConfig(**{ours: values[theirs] for theirs, ours in SIZE_FIELDS.items()}, dtype=dtype)


def gpt_config_to_hf(config, architecture, eos_token_id=None, pad_token_id=None):
    """A Hugging Face ``config.json`` dict for ``config``, for the model class ``architecture``
    (``"GPT2LMHeadModel"``, ``"GPT2ForSequenceClassification"``).  The dtype is recorded under both
    ``dtype`` (transformers ≥ 5) and ``torch_dtype`` (earlier versions)."""
    values = {"architectures": [architecture], "model_type": "gpt2"}
    values.update({theirs: getattr(config, ours) for theirs, ours in SIZE_FIELDS.items()})
    values.update(REQUIRED_VALUES)
    values.update({
        "n_inner": None, "activation_function": "gelu_new", "layer_norm_epsilon": LAYERNORM_EPS,
        "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "summary_first_dropout": 0.0,
        "bos_token_id": eos_token_id, "eos_token_id": eos_token_id, "pad_token_id": pad_token_id,
        "dtype": config.dtype.name, "torch_dtype": config.dtype.name, "use_cache": True,
    })
    return values

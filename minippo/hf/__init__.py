"""Hugging Face model directories in and out: the safetensors format, ``config.json`` and GPT-2 weights.

NumPy alone reads and writes them; PyTorch is needed only for a ``pytorch_model.bin``.
See ``docs/huggingface.md``.
"""
from minippo.hf.gpt2 import (  # noqa: F401
    directory_tokenizer,
    load_gpt2,
    load_reward_model,
    load_value_head,
    save_gpt2,
    save_reward_model,
    save_value_head,
)
from minippo.hf.safetensors import (  # noqa: F401
    load_safetensors,
    load_sharded_safetensors,
    save_safetensors,
)

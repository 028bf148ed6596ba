"""The weights of a Hugging Face model directory, whichever file holds them.

Looked for in this order (the order ``transformers`` prefers):

1. ``model.safetensors`` -- one safetensors file;
2. ``model.safetensors.index.json`` -- a sharded set of safetensors files;
3. ``pytorch_model.bin`` -- a pickled PyTorch state dict: read only when PyTorch is installed, with
   ``torch.load(weights_only=True)``, which unpickles tensors and plain containers and nothing else.
"""
import os
import pickle

import numpy as np

from minippo.hf.safetensors import load_safetensors, load_sharded_safetensors

SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX_FILE = "model.safetensors.index.json"
PYTORCH_FILE = "pytorch_model.bin"


def load_weights(directory, mmap_file=True):
    """``(tensors, source)``: every tensor of the model directory as a dict name -> ndarray (in the
    file's dtype, BF16 widened to float32), and the path of the file (or index) they came from."""
    directory = os.fspath(directory)
    single, index = os.path.join(directory, SAFETENSORS_FILE), os.path.join(directory, SAFETENSORS_INDEX_FILE)
    pytorch = os.path.join(directory, PYTORCH_FILE)
    if os.path.isfile(single):
        return load_safetensors(single, mmap_file), single
    if os.path.isfile(index):
        return load_sharded_safetensors(index, mmap_file), index
    if os.path.isfile(pytorch):
        return load_pytorch_weights(pytorch), pytorch
    raise FileNotFoundError(f"{directory}: no weights found (looked for {SAFETENSORS_FILE}, "
                            f"{SAFETENSORS_INDEX_FILE} and {PYTORCH_FILE})")


def load_pytorch_weights(path):
    """The tensors of a ``pytorch_model.bin`` as NumPy arrays; needs PyTorch."""
    try:
        import torch
    except ImportError:
        raise ImportError(f"{path} is a PyTorch pickle and reading it needs PyTorch (pip install torch); "
                          f"without it, convert the model to {SAFETENSORS_FILE}, which minippo reads with "
                          f"NumPy alone (e.g. save_pretrained(dir, safe_serialization=True) in "
                          f"transformers)") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:  # what torch.load raises on bad files
        raise ValueError(f"{path}: not a readable PyTorch state dict ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: must hold a dict of tensor names to tensors")
    return {name: pytorch_to_numpy(tensor) for name, tensor in state.items()}


def pytorch_to_numpy(tensor):
    """A CPU tensor as an ndarray; bfloat16, which NumPy lacks, becomes float32 (exactly)."""
    import torch

    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return np.asarray(tensor.numpy())

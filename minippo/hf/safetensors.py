"""The safetensors file format, read and written with NumPy alone.

A safetensors file is three parts, back to back::

    N        8 bytes, little-endian unsigned: the length of the header
    header   N bytes of UTF-8 JSON: {"<tensor name>": {"dtype": "F32", "shape": [2, 3],
             "data_offsets": [begin, end]}, ..., "__metadata__": {"<str>": "<str>"}}
    data     the raw little-endian bytes of every tensor; tensor t is data[begin:end]

The tensors must cover the data exactly: no byte belongs to two tensors or to none, and
``end − begin = prod(shape) · itemsize``.  Writers pad the header with spaces so that the data starts
at a multiple of 8 bytes, which keeps every tensor aligned.

Reading memory-maps the file copy-on-write (``mmap.ACCESS_COPY``): a tensor is a view of the file's
pages, costs no memory of its own until something writes into it, and a write changes only this
process's copy, never the file.  BF16, which NumPy lacks, is widened to float32 (exact: a bfloat16 is
the upper half of a float32).  Every malformation raises one ValueError naming the file and the tensor.
"""
import json
import math
import mmap
import os
import struct

import numpy as np

from minippo.atomic import atomic_write
from minippo.text.files import parse_json, read_text

# safetensors dtype name -> NumPy dtype of its little-endian bytes (BF16 is read as raw 16-bit words)
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
WRITABLE_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
HEADER_ALIGNMENT = 8  # the data starts at a multiple of 8 bytes
METADATA_KEY = "__metadata__"


def bfloat16_to_float32(words):
    """bfloat16 bit patterns (uint16) -> float32: a bfloat16 is the top 16 bits of a float32,
    so ``float32 bits = bf16 bits << 16`` (exact, NaN and inf included)."""
    return (words.astype(np.uint32) << 16).view(np.float32)


def read_safetensors_header(path):
    """The header of the safetensors file ``path``, checked against the file's size.

    Returns ``(tensors, metadata, data_start)``: ``tensors`` maps each name to ``(dtype name, shape,
    begin, end)`` with byte offsets from ``data_start``; ``metadata`` is the ``__metadata__`` dict (or {}).
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{path}: truncated safetensors file ({size} bytes; the header length alone "
                             f"takes 8)")
        (header_length,) = struct.unpack("<Q", prefix)
        if header_length > size - 8:
            raise ValueError(f"{path}: header length {header_length} runs past the end of the file "
                             f"({size} bytes): the file is truncated or not safetensors")
        header_bytes = file.read(header_length)
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: the safetensors header is not valid JSON ({error})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(value, str) for value in metadata.values()):
        raise ValueError(f"{path}: {METADATA_KEY} must be an object of strings, got {metadata!r}")
    data_start = 8 + header_length
    tensors = {name: check_entry(path, name, entry) for name, entry in header.items()}
    check_coverage(path, tensors, size - data_start)
    return tensors, metadata, data_start


def check_entry(path, name, entry):
    """One header entry as ``(dtype name, shape, begin, end)``, after checking its fields agree."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise ValueError(f"{where}: the entry must have exactly the fields dtype, shape and data_offsets, "
                         f"got {entry!r}")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPES:
        raise ValueError(f"{where}: unknown or unsupported dtype {dtype!r} (minippo reads "
                         f"{', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(is_count(length) for length in shape):
        raise ValueError(f"{where}: shape must be a list of integers >= 0, got {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise ValueError(f"{where}: data_offsets must be [begin, end] with 0 <= begin <= end, got {offsets!r}")
    expected = math.prod(shape) * DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != expected:
        raise ValueError(f"{where}: data_offsets {offsets} hold {offsets[1] - offsets[0]} bytes, but shape "
                         f"{shape} of {dtype} takes {expected}")
    return dtype, tuple(shape), offsets[0], offsets[1]


def is_count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_coverage(path, tensors, data_size):
    """The tensors' byte ranges must tile the data exactly: no overlap, no gap, nothing past the end."""
    position, previous = 0, None
    for name, (_, _, begin, end) in sorted(tensors.items(), key=lambda item: item[1][2:]):
        if begin < position:
            raise ValueError(f"{path}: tensor {name!r} (bytes {begin}..{end}) overlaps tensor {previous!r}")
        if begin > position:
            raise ValueError(f"{path}: bytes {position}..{begin} of the data belong to no tensor "
                             f"(before tensor {name!r})")
        if end > data_size:
            raise ValueError(f"{path}: tensor {name!r} ends at byte {end} of the data, but the file holds "
                             f"only {data_size} bytes of data: the file is truncated")
        position, previous = end, name
    if position != data_size:
        raise ValueError(f"{path}: {data_size - position} bytes after the last tensor belong to no tensor")


def load_safetensors(path, mmap_file=True):
    """Every tensor of the safetensors file ``path``: a dict name -> ndarray in the file's dtype
    (BF16 widened to float32), in native byte order.

    With ``mmap_file=True`` the arrays are copy-on-write views of the file's pages (see the module
    docstring); otherwise the file is read into memory.  Either way the arrays are writable.
    """
    path = os.fspath(path)
    tensors, _, data_start = read_safetensors_header(path)
    with open(path, "rb") as file:
        if mmap_file:
            buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
        else:
            buffer = bytearray(file.read())
    arrays = {}
    for name, (dtype, shape, begin, end) in tensors.items():
        stored = DTYPES[dtype]
        array = np.frombuffer(buffer, stored, count=(end - begin) // stored.itemsize, offset=data_start + begin)
        if not array.flags.aligned or not stored.isnative:  # rare: copy into an aligned, native array
            array = array.astype(stored.newbyteorder("="))
        array = array.reshape(shape)  # (n,) -> shape
        arrays[name] = bfloat16_to_float32(array) if dtype == "BF16" else array
    return arrays


def save_safetensors(path, tensors, metadata=None):
    """Write ``tensors`` (a dict name -> float32 or float64 array) to ``path`` atomically.

    The header is padded with spaces so the data starts at a multiple of 8 bytes; float64 tensors come
    first, so every tensor starts at a multiple of its item size.  ``metadata`` is a dict of strings,
    stored under ``__metadata__`` (Hugging Face writes ``{"format": "pt"}``).
    """
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of names to arrays, got {type(tensors).__name__}")
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(key, str) and isinstance(value, str) for key, value in metadata.items())):
        raise TypeError(f"metadata must be a dict of str to str, got {metadata!r}")
    for name, array in tensors.items():
        if not isinstance(name, str) or name == METADATA_KEY:
            raise ValueError(f"tensor name {name!r} must be a str other than {METADATA_KEY!r}")
        if not isinstance(array, np.ndarray) or array.dtype not in WRITABLE_DTYPES:
            raise TypeError(f"tensor {name!r} must be a float32 or float64 ndarray, got "
                            f"{getattr(array, 'dtype', type(array).__name__)}")
    order = sorted(tensors, key=lambda name: (-tensors[name].dtype.itemsize, name))
    header, position = {}, 0
    if metadata:
        header[METADATA_KEY] = metadata
    for name in order:
        array = tensors[name]
        header[name] = {"dtype": WRITABLE_DTYPES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [position, position + array.nbytes]}
        position += array.nbytes
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-(8 + len(header_bytes)) % HEADER_ALIGNMENT)
    with atomic_write(path) as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for name in order:
            array = tensors[name]
            little_endian = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            file.write(little_endian.reshape(-1).view(np.uint8))  # the raw bytes, not a copy


def load_sharded_safetensors(index_path, mmap_file=True):
    """Every tensor of a sharded set, through its index (``model.safetensors.index.json``:
    ``{"weight_map": {"<tensor>": "<shard file>"}, "metadata": {...}}``; shards beside the index).

    Each shard must hold exactly the tensors the index assigns to it.
    """
    index_path = os.fspath(index_path)
    index = parse_json(read_text(index_path), index_path)  # a byte order mark dropped, a repeated key refused
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not all(isinstance(shard, str) for shard in weight_map.values()):
        raise ValueError(f"{index_path}: must be an object with a 'weight_map' of tensor names to shard files")
    arrays = {}
    directory = os.path.dirname(index_path)
    for shard in sorted(set(weight_map.values())):
        shard_path = os.path.join(directory, shard)
        if not os.path.isfile(shard_path):
            raise FileNotFoundError(f"{index_path}: shard {shard!r} is missing ({shard_path})")
        shard_arrays = load_safetensors(shard_path, mmap_file)
        listed = {name for name, file in weight_map.items() if file == shard}
        missing, unlisted = sorted(listed - shard_arrays.keys()), sorted(shard_arrays.keys() - listed)
        if missing:
            raise ValueError(f"{index_path}: tensor {missing[0]!r} is listed in shard {shard!r}, which lacks it")
        if unlisted:
            raise ValueError(f"{shard_path}: holds tensor {unlisted[0]!r}, which the index {index_path} "
                             f"does not list in this shard")
        arrays.update(shard_arrays)
    return arrays

"""The safetensors reader and writer (NumPy only): round trips, memory mapping, F16/BF16, sharded
sets, and one clear error for every kind of malformed file."""
import json
import mmap
import struct

import numpy as np
import pytest

from minippo.hf.safetensors import (
    bfloat16_to_float32,
    load_safetensors,
    load_sharded_safetensors,
    read_safetensors_header,
    save_safetensors,
)


def write_raw(path, header, data=b"", header_length=None):
    """A safetensors file with exactly this header (a dict, or raw bytes) and data."""
    header_bytes = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(header_bytes) if header_length is None else header_length
    path.write_bytes(struct.pack("<Q", length) + header_bytes + data)
    return path


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def mapped_file(array):
    """The mmap object an array's memory comes from, or None."""
    while isinstance(array, np.ndarray):
        array = array.base
    return array.obj if isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap) else None


@pytest.fixture
def tensors():
    rng = np.random.default_rng(0)
    return {"b.weight": rng.standard_normal((3, 5)).astype(np.float32),
            "a.bias": rng.standard_normal(7),  # float64
            "empty": np.zeros((0, 4), np.float32), "scalar": np.array(2.5, np.float32)}


def test_round_trip_keeps_names_shapes_dtypes_and_values(tmp_path, tensors):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, tensors, {"format": "pt"})
    loaded = load_safetensors(path)
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        np.testing.assert_array_equal(loaded[name], array)
    _, metadata, data_start = read_safetensors_header(path)
    assert metadata == {"format": "pt"} and data_start % 8 == 0


def test_written_file_is_read_by_the_reference_library(tmp_path, tensors):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "m.safetensors"
    save_safetensors(path, tensors)
    reference = safetensors_numpy.load_file(str(path))
    for name, array in tensors.items():
        np.testing.assert_array_equal(reference[name], array)
        assert reference[name].dtype == array.dtype


def test_loading_maps_the_file_copy_on_write(tmp_path, tensors):
    path = tmp_path / "m.safetensors"
    save_safetensors(path, tensors)
    before = path.read_bytes()
    loaded = load_safetensors(path)
    weight = loaded["b.weight"]
    assert mapped_file(weight) is not None and weight.flags.writeable and weight.flags.aligned
    weight += 1.0  # a private copy of the page: the file stays as it was
    assert path.read_bytes() == before
    np.testing.assert_array_equal(load_safetensors(path)["b.weight"], tensors["b.weight"])
    unmapped = load_safetensors(path, mmap_file=False)["b.weight"]
    assert mapped_file(unmapped) is None and unmapped.flags.writeable


def test_reads_f16_and_bf16(tmp_path):
    half = np.array([1.5, -2.0, 65504.0], dtype=np.float16)
    floats = np.array([1.0, -3.140625, np.inf, 2.0 ** -126], dtype=np.float32)  # exactly representable in bf16
    bf16 = (floats.view(np.uint32) >> 16).astype("<u2")
    path = write_raw(tmp_path / "h.safetensors",
                     {"h": entry("F16", [3], 0, 6), "b": entry("BF16", [2, 2], 6, 14)},
                     half.astype("<f2").tobytes() + bf16.tobytes())
    loaded = load_safetensors(path)
    assert loaded["h"].dtype == np.float16 and loaded["b"].dtype == np.float32
    np.testing.assert_array_equal(loaded["h"], half)
    np.testing.assert_array_equal(loaded["b"], floats.reshape(2, 2))


def test_bfloat16_widening_matches_pytorch():
    torch = pytest.importorskip("torch")
    values = torch.randn(1000, dtype=torch.float32).to(torch.bfloat16)
    words = values.view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bfloat16_to_float32(words), values.float().numpy())


def test_unaligned_tensor_is_copied_aligned(tmp_path):
    values = np.arange(3, dtype="<f4")
    path = write_raw(tmp_path / "u.safetensors", {"a": entry("U8", [1], 0, 1), "f": entry("F32", [3], 1, 13)},
                     b"\x07" + values.tobytes())
    loaded = load_safetensors(path)
    assert loaded["f"].flags.aligned
    np.testing.assert_array_equal(loaded["f"], values)


def test_writer_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(TypeError, match="tensor 'ids' must be a float32 or float64 ndarray, got int64"):
        save_safetensors(tmp_path / "x.safetensors", {"ids": np.arange(3)})
    with pytest.raises(ValueError, match="__metadata__"):
        save_safetensors(tmp_path / "x.safetensors", {"__metadata__": np.zeros(1)})
    with pytest.raises(TypeError, match="metadata must be a dict of str to str"):
        save_safetensors(tmp_path / "x.safetensors", {"a": np.zeros(1)}, {"format": 1})
    assert not (tmp_path / "x.safetensors").exists()


GOOD_HEADER = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [1], 8, 12)}
MALFORMED = [
    ("short", lambda p: p.write_bytes(b"\x01\x02"), r"truncated safetensors file \(2 bytes"),
    ("header past end", lambda p: write_raw(p, GOOD_HEADER, bytes(12), header_length=10_000),
     "header length 10000 runs past the end of the file"),
    ("bad json", lambda p: write_raw(p, b"{not json"), "header is not valid JSON"),
    ("not an object", lambda p: write_raw(p, b"[1, 2]"), "must be a JSON object, got list"),
    ("bad metadata", lambda p: write_raw(p, {"__metadata__": {"n": 1}}), "__metadata__ must be an object of strings"),
    ("missing field", lambda p: write_raw(p, {"a": {"dtype": "F32", "shape": [1]}}, bytes(4)),
     "tensor 'a': the entry must have exactly the fields dtype, shape and data_offsets"),
    ("unknown dtype", lambda p: write_raw(p, {"a": entry("F8_E4M3", [4], 0, 4)}, bytes(4)),
     "tensor 'a': unknown or unsupported dtype 'F8_E4M3'"),
    ("bad shape", lambda p: write_raw(p, {"a": entry("F32", [-1], 0, 4)}, bytes(4)),
     r"tensor 'a': shape must be a list of integers >= 0, got \[-1\]"),
    ("reversed offsets", lambda p: write_raw(p, {"a": entry("F32", [0], 4, 0)}, bytes(4)),
     r"tensor 'a': data_offsets must be \[begin, end\]"),
    ("size mismatch", lambda p: write_raw(p, {"a": entry("F32", [3], 0, 8)}, bytes(8)),
     r"tensor 'a': data_offsets \[0, 8\] hold 8 bytes, but shape \[3\] of F32 takes 12"),
    ("overlap", lambda p: write_raw(p, {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}, bytes(12)),
     "tensor 'b' .bytes 4..12. overlaps tensor 'a'"),
    ("gap", lambda p: write_raw(p, {"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}, bytes(12)),
     "bytes 4..8 of the data belong to no tensor .before tensor 'b'."),
    ("truncated data", lambda p: write_raw(p, GOOD_HEADER, bytes(10)),
     "tensor 'b' ends at byte 12 of the data, but the file holds only 10 bytes of data: the file is truncated"),
    ("trailing bytes", lambda p: write_raw(p, GOOD_HEADER, bytes(16)), "4 bytes after the last tensor"),
]


@pytest.mark.parametrize("make, message", [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_every_malformation_is_one_error_naming_the_file(tmp_path, make, message):
    path = tmp_path / "bad.safetensors"
    make(path)
    with pytest.raises(ValueError, match=message) as error:
        load_safetensors(path)
    assert str(error.value).startswith(str(path))


def write_shards(tmp_path, tensors, weight_map):
    for shard in set(weight_map.values()):
        save_safetensors(tmp_path / shard, {name: tensors[name] for name in tensors if weight_map.get(name) == shard})
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


def test_sharded_set_loads_through_its_index(tmp_path, tensors):
    weight_map = {"b.weight": "s1.safetensors", "a.bias": "s2.safetensors", "empty": "s2.safetensors",
                  "scalar": "s1.safetensors"}
    loaded = load_sharded_safetensors(write_shards(tmp_path, tensors, weight_map))
    assert loaded.keys() == tensors.keys()
    for name, array in tensors.items():
        np.testing.assert_array_equal(loaded[name], array)


def test_sharded_set_errors_name_the_index_shard_and_tensor(tmp_path, tensors):
    weight_map = {"b.weight": "s1.safetensors", "a.bias": "s1.safetensors"}
    index = write_shards(tmp_path, tensors, weight_map)
    index.write_text(json.dumps({"weight_map": {**weight_map, "scalar": "s1.safetensors"}}))
    with pytest.raises(ValueError, match="tensor 'scalar' is listed in shard 's1.safetensors', which lacks it"):
        load_sharded_safetensors(index)
    index.write_text(json.dumps({"weight_map": {"b.weight": "s1.safetensors"}}))
    with pytest.raises(ValueError, match="holds tensor 'a.bias', which the index .* does not list"):
        load_sharded_safetensors(index)
    index.write_text(json.dumps({"weight_map": {"b.weight": "s9.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="shard 's9.safetensors' is missing"):
        load_sharded_safetensors(index)
    index.write_text("{")
    with pytest.raises(ValueError, match="index.json: not valid JSON"):
        load_sharded_safetensors(index)
    index.write_text(json.dumps({"weights": {}}))
    with pytest.raises(ValueError, match="'weight_map' of tensor names to shard files"):
        load_sharded_safetensors(index)

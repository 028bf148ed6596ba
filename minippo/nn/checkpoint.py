"""One-file checkpoints: config, weights, optimizer state, step and RNG state.

The file is a NumPy ``.npz`` (no pickle): arrays are stored under ``params/<name>`` and
``optimizer/<key>``; everything else (the model config, the step, the bit-generator state, any extra
JSON-friendly metadata) is one JSON document under ``meta``.

Writing is atomic: the archive goes to a temporary file in the target directory, is flushed to disk,
then renamed over the destination, so a crash never leaves a half-written checkpoint.  Loading checks
the format and reports what is wrong rather than returning partial state.
"""
import json
import os
import zipfile

import numpy as np

from minippo.atomic import atomic_write

FORMAT_VERSION = 1


def rng_state(rng):
    """The JSON-friendly state of a ``numpy.random.Generator`` (arrays in it, as MT19937 and Philox
    keep, become lists; setting the state converts them back)."""
    def json_friendly(value):
        if isinstance(value, dict):
            return {key: json_friendly(item) for key, item in value.items()}
        return value.tolist() if isinstance(value, np.ndarray) else value

    return json_friendly(rng.bit_generator.state)


def rng_from_state(state):
    """A Generator that continues exactly where the one whose ``rng_state`` was saved stopped."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


def save_checkpoint(path, params, config=None, optimizer_state=None, step=0, rng=None, extra=None):
    """Atomically write a checkpoint to ``path`` (parent directories are created)."""
    arrays = {f"params/{name}": value for name, value in params.items()}
    arrays.update({f"optimizer/{key}": value for key, value in (optimizer_state or {}).items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "config": config,
        "step": int(step),
        "rng_state": None if rng is None else rng_state(rng),
        "extra": extra or {},
    }
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as file:
        np.savez(file, **arrays)


def load_checkpoint(path):
    """Read a checkpoint written by :func:`save_checkpoint`.

    Returns a dict with ``params``, ``optimizer_state`` (possibly empty), ``config``, ``step``,
    ``rng`` (a Generator, or None) and ``extra``.  Raises ``ValueError`` naming the file and the problem.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path!r} is a directory, not a file")
    if not zipfile.is_zipfile(path):  # e.g. a .npy file or text: np.load would not return an archive
        raise ValueError(f"{path!r} is not a minippo checkpoint (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        raise ValueError(f"{path!r} is not a minippo checkpoint (unreadable .npz: {error})") from error
    if "meta" not in contents:
        raise ValueError(f"{path!r} is not a minippo checkpoint: it has no 'meta' entry")
    try:
        meta = json.loads(str(contents.pop("meta")))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r}: the 'meta' entry is not valid JSON ({error})") from error
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ValueError(f"{path!r}: checkpoint format {version!r}, "
                         f"this minippo reads format {FORMAT_VERSION}")
    missing = [key for key in ("config", "step", "rng_state", "extra") if key not in meta]
    if missing:
        raise ValueError(f"{path!r}: the checkpoint metadata lacks {missing}")
    if not isinstance(meta["extra"], dict):
        raise ValueError(f"{path!r}: the checkpoint's 'extra' metadata must be a JSON object, "
                         f"got {type(meta['extra']).__name__}")
    params = {key[len("params/"):]: value for key, value in contents.items() if key.startswith("params/")}
    optimizer_state = {key[len("optimizer/"):]: value for key, value in contents.items()
                       if key.startswith("optimizer/")}
    unknown = [key for key in contents if not key.startswith(("params/", "optimizer/"))]
    if unknown:
        raise ValueError(f"{path!r}: unexpected entries {unknown}")
    try:
        rng = None if meta["rng_state"] is None else rng_from_state(meta["rng_state"])
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path!r}: the saved random-generator state is invalid ({error!r})") from error
    return {
        "params": params,
        "optimizer_state": optimizer_state,
        "config": meta["config"],
        "step": meta["step"],
        "rng": rng,
        "extra": meta["extra"],
    }

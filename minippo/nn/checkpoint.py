"""One-file checkpoints: what they hold (their kind), config, weights, optimizer state, step and RNG state.

The file is a NumPy ``.npz`` (no pickle): arrays are stored under ``params/<name>``,
``optimizer/<key>`` and ``state/<key>`` (what else a trainer needs to continue, e.g. a value head);
everything else (the kind, the model config, the step, the bit-generator state,
any extra JSON-friendly metadata) is one JSON document under ``meta``.

Every checkpoint records its ``kind`` (:data:`CHECKPOINT_KINDS`) and each loader asks for its own, so
a file given to the wrong loader is refused with the name of the right one.  Format 1 files (written
before kinds were recorded) are still read: their kind follows from their metadata by one legacy rule
(:func:`legacy_kind`).

Writing is atomic: the archive goes to a temporary file in the target directory, is flushed to disk,
then renamed over the destination, so a crash never leaves a half-written checkpoint.  Loading checks
the format and reports what is wrong rather than returning partial state; a file the operating system
cannot read (no permission, an I/O error) is reported as such, never as "not a checkpoint".
"""
import hashlib
import json
import os
import zipfile

import numpy as np

from minippo.atomic import atomic_write

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# kind: (what it holds, the function that loads it)
CHECKPOINT_KINDS = {
    "gpt": ("a GPT", "minippo.pretrain.load_model"),
    "reward_model": ("a reward model", "RewardModel.load"),
    "ppo_policy": ("a control-task PPO policy", "load_policy"),
}


def json_friendly(value):
    """``value`` with every array in it (in dicts and lists, at any depth) made a list, and NumPy scalars
    Python numbers: JSON writes floats exactly (shortest repr), so the values come back bit for bit."""
    if isinstance(value, dict):
        return {key: json_friendly(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_friendly(item) for item in value]
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value


def rng_state(rng):
    """The JSON-friendly state of a ``numpy.random.Generator`` (arrays in it, as MT19937 and Philox
    keep, become lists; setting the state converts them back)."""
    return json_friendly(rng.bit_generator.state)


def rng_from_state(state):
    """A Generator that continues exactly where the one whose ``rng_state`` was saved stopped."""
    bit_generator = getattr(np.random, state["bit_generator"])()
    bit_generator.state = state
    return np.random.Generator(bit_generator)


ENTRY_PREFIXES = ("params/", "optimizer/", "state/")


def save_checkpoint(path, params, config=None, optimizer_state=None, step=0, rng=None, extra=None, *, kind,
                    state=None):
    """Atomically write a checkpoint of ``kind`` (a key of :data:`CHECKPOINT_KINDS`) to ``path`` (parent
    directories are created); ``state`` is a dict of further arrays (``load_checkpoint``'s ``state``)."""
    if kind not in CHECKPOINT_KINDS:
        raise ValueError(f"kind must be one of {tuple(CHECKPOINT_KINDS)}, got {kind!r}")
    arrays = {f"params/{name}": value for name, value in params.items()}
    arrays.update({f"optimizer/{key}": value for key, value in (optimizer_state or {}).items()})
    arrays.update({f"state/{key}": value for key, value in (state or {}).items()})
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "step": int(step),
        "rng_state": None if rng is None else rng_state(rng),
        "extra": extra or {},
    }
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_write(path) as file:
        np.savez(file, **arrays)


def legacy_kind(extra):
    """The kind of a format-1 checkpoint, which did not record it: a reward model said so in ``extra``,
    a control-task policy kept its observation statistics there, anything else held a GPT."""
    if extra.get("kind") == "reward_model":
        return "reward_model"
    return "ppo_policy" if "obs_rms" in extra else "gpt"


def read_archive(file, path):
    """Every entry of the ``.npz`` archive open as ``file`` (named ``path``); ValueError if it is not one.
    Errors of the operating system (which carry an errno) are raised as they are."""
    if not zipfile.is_zipfile(file):  # e.g. a .npy file or text: np.load would not return an archive
        raise ValueError(f"{path!r} is not a minippo checkpoint (not an .npz archive)")
    file.seek(0)
    try:
        with np.load(file, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as error:
        if isinstance(error, OSError) and error.errno is not None:  # the disk, not the content
            raise type(error)(error.errno, error.strerror, path) from error
        raise ValueError(f"{path!r} is not a minippo checkpoint (unreadable .npz: {error})") from error


def load_checkpoint(path, kind=None):
    """Read a checkpoint written by :func:`save_checkpoint`; with ``kind``, only a checkpoint of that kind.

    Returns a dict with ``kind``, ``params``, ``optimizer_state`` and ``state`` (possibly empty), ``config``,
    ``step``, ``rng`` (a Generator, or None) and ``extra``.  Raises ``ValueError`` naming the file and the
    problem (for a checkpoint of another kind: what it holds and which function loads it), and the
    operating system's ``OSError`` (naming the file) when it cannot be read.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise IsADirectoryError(f"checkpoint {path!r} is a directory, not a file")
    with open(path, "rb") as file:  # PermissionError etc. name the file
        contents = read_archive(file, path)
    if "meta" not in contents:
        raise ValueError(f"{path!r} is not a minippo checkpoint: it has no 'meta' entry")
    try:
        meta = json.loads(str(contents.pop("meta")))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path!r}: the 'meta' entry is not valid JSON ({error})") from error
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path!r}: checkpoint format {version!r}, "
                         f"this minippo reads formats {', '.join(map(str, READABLE_VERSIONS))}")
    missing = [key for key in ("config", "step", "rng_state", "extra") if key not in meta]
    if missing:
        raise ValueError(f"{path!r}: the checkpoint metadata lacks {missing}")
    if not isinstance(meta["extra"], dict):
        raise ValueError(f"{path!r}: the checkpoint's 'extra' metadata must be a JSON object, "
                         f"got {type(meta['extra']).__name__}")
    saved_kind = legacy_kind(meta["extra"]) if version == 1 else meta.get("kind")
    if saved_kind not in CHECKPOINT_KINDS:
        raise ValueError(f"{path!r}: unknown checkpoint kind {saved_kind!r}")
    if kind is not None and saved_kind != kind:
        holds, loader = CHECKPOINT_KINDS[saved_kind]
        raise ValueError(f"checkpoint {path!r} holds {holds} (load it with {loader}), "
                         f"not {CHECKPOINT_KINDS[kind][0]}")
    params, optimizer_state, state = ({key[len(prefix):]: value for key, value in contents.items()
                                       if key.startswith(prefix)} for prefix in ENTRY_PREFIXES)
    unknown = [key for key in contents if not key.startswith(ENTRY_PREFIXES)]
    if unknown:
        raise ValueError(f"{path!r}: unexpected entries {unknown}")
    try:
        rng = None if meta["rng_state"] is None else rng_from_state(meta["rng_state"])
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path!r}: the saved random-generator state is invalid ({error!r})") from error
    return {
        "kind": saved_kind,
        "params": params,
        "optimizer_state": optimizer_state,
        "state": state,
        "config": meta["config"],
        "step": meta["step"],
        "rng": rng,
        "extra": meta["extra"],
    }


def weights_digest(params):
    """SHA-256 of a model's weights (``params``, name -> array): a resumed run must keep the model it started
    from (the frozen reference of RLHF and DPO)."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode() + np.ascontiguousarray(params[name]).tobytes())
    return digest.hexdigest()

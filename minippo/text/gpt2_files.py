"""GPT-2's tokenizer files, as Hugging Face reads and writes them.

A GPT-2 tokenizer directory holds

- ``vocab.json``: ``{"token": id, ...}``, every token written in GPT-2's *byte-level alphabet*: the 256
  bytes are mapped to 256 printable characters (:func:`bytes_to_unicode`) so that any byte string is a
  plain JSON string; the space byte is ``"Ġ"``, so ``" the"`` is ``"Ġthe"``;
- ``merges.txt``: the line ``#version: 0.2``, then one merge per line, ``"Ġ t"``, lowest rank first;
- ``tokenizer_config.json`` (optional): the names of the special tokens (``eos_token``, ``pad_token``, ...);
- ``tokenizer.json`` (optional; all that ``transformers`` 5 writes): the whole ``tokenizers`` pipeline,
  with the same vocabulary and merges under ``"model"`` and the special tokens under ``"added_tokens"``.

:func:`read_pretrained` reads a directory into a :class:`GPT2Files` (from ``vocab.json`` + ``merges.txt``
when present, else from ``tokenizer.json``), checking the syntax and naming the file and the problem;
:func:`write_pretrained` writes ``vocab.json``, ``merges.txt`` and ``tokenizer_config.json`` atomically.
"""
import dataclasses
import json
import os

from minippo.atomic import atomic_write
from minippo.text.files import BYTE_ORDER_MARK, unique_keys

ENDOFTEXT = "<|endoftext|>"
MERGES_HEADER = "#version: 0.2"
VOCAB_FILE, MERGES_FILE, CONFIG_FILE, TOKENIZER_FILE = (
    "vocab.json", "merges.txt", "tokenizer_config.json", "tokenizer.json")
MISSING = object()  # a key absent from tokenizer.json, where tokenizers' default is what GPT-2 needs

# The parts of a tokenizer.json pipeline that GPT-2's tokenizer has, with the values GPT2Tokenizer can honour.
GPT2_PIPELINE = {
    ("normalizer",): (None, MISSING),
    ("pre_tokenizer", "type"): ("ByteLevel",),
    ("pre_tokenizer", "add_prefix_space"): (False,),
    ("pre_tokenizer", "use_regex"): (True, MISSING),
    ("decoder", "type"): ("ByteLevel",),
    ("post_processor", "type"): ("ByteLevel", "TemplateProcessing", MISSING),
    ("truncation",): (None, MISSING),
    ("model", "type"): ("BPE",),
    ("model", "dropout"): (None, MISSING),
    ("model", "unk_token"): (None, MISSING),
    ("model", "continuing_subword_prefix"): (None, "", MISSING),
    ("model", "end_of_word_suffix"): (None, "", MISSING),
    ("model", "byte_fallback"): (False, MISSING),
    ("model", "ignore_merges"): (False, MISSING),
}
# tokenizer_config.json settings that change the ids Hugging Face produces, with the values GPT-2 has.
GPT2_CONFIG = {
    ("tokenizer_class",): ("GPT2Tokenizer", "GPT2TokenizerFast", MISSING),
    ("add_prefix_space",): (False, MISSING),
    ("add_bos_token",): (False, MISSING),
    ("add_eos_token",): (False, MISSING),
}


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: a dict from each byte value to a printable character.

    The 188 bytes that are printable Latin-1 characters (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for
    themselves; the other 68 (controls, space, DEL, NBSP, soft hyphen) take the characters U+0100, U+0101,
    ... in byte order, so byte 0 is ``"Ā"`` and the space byte 32 is ``"Ġ"``.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    others = [byte for byte in range(256) if byte not in table]
    table.update({byte: chr(256 + index) for index, byte in enumerate(others)})
    return dict(sorted(table.items()))


BYTE_TO_UNICODE = bytes_to_unicode()
UNICODE_TO_BYTE = {character: byte for byte, character in BYTE_TO_UNICODE.items()}


def token_string(token_bytes):
    """The byte-level string of a token's bytes: ``b" the"`` -> ``"Ġthe"``."""
    return "".join(BYTE_TO_UNICODE[byte] for byte in token_bytes)


def token_bytes(token):
    """The bytes of a vocabulary entry: ``"Ġthe"`` -> ``b" the"``.  An entry with a character outside the
    byte-level alphabet (only possible for a token no merge makes) stands for its UTF-8 bytes, as in
    Hugging Face's byte-level decoder."""
    if all(character in UNICODE_TO_BYTE for character in token):
        return bytes(UNICODE_TO_BYTE[character] for character in token)
    return token.encode("utf-8")


@dataclasses.dataclass
class GPT2Files:
    """What a GPT-2 tokenizer directory says: ``vocab`` (token -> id), ``merges`` (pairs of tokens, by rank),
    the names of its special tokens and of those serving as end of sequence and padding."""

    vocab: dict
    merges: list
    special_tokens: list
    eos_token: str
    pad_token: str


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read; the message names the file."""


def read_json(path):
    """The JSON value in ``path``; a repeated key in an object is an error, not a silent overwrite."""
    with open(path, "rb") as file:
        content = file.read()
    try:
        return json.loads(content.decode("utf-8").removeprefix(BYTE_ORDER_MARK), object_pairs_hook=unique_keys(path))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise TokenizerFileError(f"{path}: invalid JSON ({error})") from None
    except ValueError as error:  # a repeated key
        raise TokenizerFileError(str(error)) from None


def check_vocab(vocab, path):
    """``vocab`` if it is a JSON object of tokens to integer ids; otherwise an error naming ``path``."""
    if not isinstance(vocab, dict):
        raise TokenizerFileError(f"{path}: the vocabulary must be a JSON object of token: id")
    for token, token_id in vocab.items():
        if type(token_id) is not int:
            raise TokenizerFileError(f"{path}: the id of {token!r} must be an integer, got {token_id!r}")
    return vocab


def split_merge(merge, path, rank):
    """A merge of ``merges.txt`` or ``tokenizer.json`` (``"a b"`` or ``["a", "b"]``) as a pair of tokens."""
    parts = merge.split(" ") if isinstance(merge, str) else merge
    if not isinstance(parts, list) or len(parts) != 2 or not all(isinstance(part, str) and part for part in parts):
        raise TokenizerFileError(f"{path}: merge {rank} must be two tokens, got {merge!r}")
    return tuple(parts)


def read_merges(path):
    """The merges of a ``merges.txt``: the ``#version`` line and blank lines skipped."""
    with open(path, "rb") as file:
        try:
            text = file.read().decode("utf-8").removeprefix(BYTE_ORDER_MARK)
            lines = text.splitlines()  # "\r\n" too; no byte-level token holds a line break
        except UnicodeDecodeError as error:
            raise TokenizerFileError(f"{path}: not UTF-8 ({error})") from None
    lines = [line for line in lines if line and not line.startswith("#version")]
    return [split_merge(line, path, rank) for rank, line in enumerate(lines)]


def token_name(value, path, key):
    """The name of a special token in tokenizer_config.json: a string, ``{"content": ...}`` or null."""
    if isinstance(value, dict):
        value = value.get("content")
    if value is not None and not isinstance(value, str):
        raise TokenizerFileError(f"{path}: {key} must be a token name, got {value!r}")
    return value


def check_settings(settings, allowed, path):
    """Refuse a setting (a key path in ``settings``) whose value is not among ``allowed`` (its tuple)."""
    for keys, values in allowed.items():
        value = settings
        for key in keys:
            value = value.get(key, MISSING) if isinstance(value, dict) else MISSING
        if not any(value is option or (type(value) is type(option) and value == option) for option in values):
            shown = [option for option in values if option is not MISSING]
            raise TokenizerFileError(
                f"{path}: {'.'.join(keys)} is {'missing' if value is MISSING else repr(value)}; "
                f"minippo's GPT2Tokenizer reads GPT-2's tokenizer, which has {' or '.join(map(repr, shown))}"
            )


def read_tokenizer_json(path):
    """``(vocab, merges, special tokens)`` of a ``tokenizers`` ``tokenizer.json`` with GPT-2's pipeline."""
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise TokenizerFileError(f"{path}: expected a JSON object")
    check_settings(payload, GPT2_PIPELINE, path)
    if (payload.get("post_processor") or {}).get("type") == "TemplateProcessing":
        single = payload["post_processor"].get("single")
        if not isinstance(single, list) or any(not isinstance(item, dict) or "Sequence" not in item for item in single):
            raise TokenizerFileError(f"{path}: post_processor adds tokens ({single!r}); GPT-2's adds none")
    vocab = check_vocab(payload["model"].get("vocab"), path)
    merges = payload["model"].get("merges")
    if not isinstance(merges, list):
        raise TokenizerFileError(f"{path}: model.merges must be a list")
    merges = [split_merge(merge, path, rank) for rank, merge in enumerate(merges)]
    special_tokens = []
    for added in payload.get("added_tokens") or []:
        if not isinstance(added, dict) or not isinstance(added.get("content"), str) or type(added.get("id")) is not int:
            raise TokenizerFileError(f"{path}: each of added_tokens must have a content and an id, got {added!r}")
        if not added.get("special"):
            raise TokenizerFileError(
                f"{path}: added token {added['content']!r} is not special: Hugging Face cuts it out of the text "
                "before BPE, which minippo's GPT2Tokenizer does not do")
        if vocab.setdefault(added["content"], added["id"]) != added["id"]:
            raise TokenizerFileError(f"{path}: added token {added['content']!r} has id {added['id']}, "
                                     f"but model.vocab gives it {vocab[added['content']]}")
        special_tokens.append(added["content"])
    return vocab, merges, special_tokens


def read_pretrained(directory):
    """Read the GPT-2 tokenizer in ``directory`` (see the module docstring) into a :class:`GPT2Files`.

    Raises FileNotFoundError naming what is missing and :class:`TokenizerFileError` (a ValueError) naming the
    file and the problem.  Whether the vocabulary and merges fit together is checked by GPT2Tokenizer.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory} is not a directory (a GPT-2 tokenizer is a directory)")
    path = os.path.join(directory, "{}").format
    if os.path.exists(path(VOCAB_FILE)) or os.path.exists(path(MERGES_FILE)):
        for name in (VOCAB_FILE, MERGES_FILE):
            if not os.path.exists(path(name)):
                raise FileNotFoundError(f"{directory} has {VOCAB_FILE if name == MERGES_FILE else MERGES_FILE} "
                                        f"but no {name}")
        vocab = check_vocab(read_json(path(VOCAB_FILE)), path(VOCAB_FILE))
        merges, special_tokens = read_merges(path(MERGES_FILE)), []
    elif os.path.exists(path(TOKENIZER_FILE)):
        vocab, merges, special_tokens = read_tokenizer_json(path(TOKENIZER_FILE))
    else:
        raise FileNotFoundError(f"{directory} has no GPT-2 tokenizer: no {VOCAB_FILE} + {MERGES_FILE}, "
                                f"no {TOKENIZER_FILE}")
    config = read_json(path(CONFIG_FILE)) if os.path.exists(path(CONFIG_FILE)) else {}
    if not isinstance(config, dict):
        raise TokenizerFileError(f"{path(CONFIG_FILE)}: expected a JSON object")
    check_settings(config, GPT2_CONFIG, path(CONFIG_FILE))
    eos_token = token_name(config.get("eos_token", ENDOFTEXT), path(CONFIG_FILE), "eos_token") or ENDOFTEXT
    pad_token = token_name(config.get("pad_token"), path(CONFIG_FILE), "pad_token") or eos_token
    # Hugging Face treats as special the named tokens and those marked special in added_tokens_decoder.
    named = [token_name(config.get(key), path(CONFIG_FILE), key) for key in ("bos_token", "unk_token")]
    marked = [added.get("content") for added in (config.get("added_tokens_decoder") or {}).values()
              if isinstance(added, dict) and added.get("special")]
    special_tokens += [name for name in named + marked if name in vocab]
    return GPT2Files(vocab, merges, list(dict.fromkeys([eos_token, pad_token, *special_tokens])), eos_token, pad_token)


def write_pretrained(directory, files):
    """Write ``files`` (a :class:`GPT2Files`) to ``directory`` as ``vocab.json``, ``merges.txt`` and
    ``tokenizer_config.json``, each atomically, in the layout Hugging Face's ``save_pretrained`` gives them."""
    directory = os.fspath(directory)
    path = os.path.join(directory, "{}").format
    if os.path.exists(path(TOKENIZER_FILE)):
        raise FileExistsError(f"{directory} holds a {TOKENIZER_FILE}, which Hugging Face would read instead of "
                              f"the {VOCAB_FILE} and {MERGES_FILE} written here: save to another directory")
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "bos_token": files.eos_token,
        "eos_token": files.eos_token,
        "unk_token": files.eos_token,
        "pad_token": files.pad_token,
        "added_tokens_decoder": {
            str(files.vocab[name]): {"content": name, "lstrip": False, "normalized": False, "rstrip": False,
                                     "single_word": False, "special": True}
            for name in files.special_tokens
        },
    }
    with atomic_write(path(VOCAB_FILE), "w", encoding="utf-8") as file:
        file.write(json.dumps(files.vocab, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with atomic_write(path(MERGES_FILE), "w", encoding="utf-8") as file:
        merge_lines = [MERGES_HEADER, *(f"{left} {right}" for left, right in files.merges)]
        file.write("".join(f"{line}\n" for line in merge_lines))
    with atomic_write(path(CONFIG_FILE), "w", encoding="utf-8") as file:
        file.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

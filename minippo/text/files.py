"""Reading a user's text file (training data, preference pairs, references, an MRP spec).

Every such file is UTF-8.  Python's own error for one that is not ("'utf-8' codec can't decode byte
0xe9 in position 3") names neither the file nor what to do, so :func:`read_text` says which file it is.
Editors on Windows often start a UTF-8 file with a byte order mark (U+FEFF); :func:`read_text` drops
it, so that it becomes neither part of the first line nor a JSON syntax error.

JSON is parsed by :func:`parse_json`, which refuses an object with a repeated key (Python's ``json``
silently keeps the last value).  JSON Lines files (one JSON value per line) are read by
:func:`jsonl_lines`, whose errors name the file and the line; :func:`read_preference_pairs` reads the
``{"prompt", "chosen", "rejected"}`` pairs that reward models (and every RLHF tool) learn from.  A pair
that carries no preference (``chosen`` identical to ``rejected``, or either empty) is an error naming its
line: training on it only teaches the model to score both alike, and a silent skip would hide a
mistake in how the file was made.
"""
import json

BYTE_ORDER_MARK = "\ufeff"
PREFERENCE_FIELDS = ("prompt", "chosen", "rejected")


def read_text(path):
    """The content of the UTF-8 text file ``path``, without a leading byte order mark.

    Raises ValueError ``"<path>: not UTF-8 text (<reason>)"`` for a file that is not valid UTF-8; a
    missing or unreadable file raises the usual OSError (FileNotFoundError, IsADirectoryError, ...).
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
    return text.removeprefix(BYTE_ORDER_MARK)


def unique_keys(where):
    """A ``json.loads`` ``object_pairs_hook`` that makes an object from its pairs, with ValueError
    ``"<where>: repeated key 'gamma'"`` for a repeated key, which Python's ``json`` would silently resolve
    to the last value."""

    def make_object(pairs):
        keys = set()
        for key, _ in pairs:
            if key in keys:
                raise ValueError(f"{where}: repeated key {key!r}")
            keys.add(key)
        return dict(pairs)

    return make_object


def parse_json(text, where):
    """The JSON value of ``text``; ValueError ``"<where>: ..."`` if it is not JSON or an object in it repeats
    a key (:func:`unique_keys`)."""
    try:
        return json.loads(text, object_pairs_hook=unique_keys(where))
    except json.JSONDecodeError as error:
        line = f"line {error.lineno} " if error.lineno > 1 else ""
        raise ValueError(f"{where}: not valid JSON ({error.msg} at {line}column {error.colno})") from None
    except RecursionError:  # arrays or objects nested thousands deep
        raise ValueError(f"{where}: not valid JSON (nested too deeply)") from None


def jsonl_lines(text, where):
    """Yield ``(where(number), line, value)`` for each non-blank line of the JSON Lines ``text``.

    ``where(number)`` is how the caller names line ``number`` (counting every line from 1) in its
    errors, e.g. ``"pairs.jsonl:3"``; ``line`` is the line without surrounding whitespace, ``value``
    its JSON value.  A line that is not JSON raises ValueError ``"<where>: not valid JSON (<reason>)"``, one
    whose object repeats a key ``"<where>: repeated key '<key>'"`` (see :func:`parse_json`).
    """
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        yield where(number), line, parse_json(line, where(number))


def check_preference(pair, where):
    """ValueError naming ``where`` if the pair carries no preference: ``chosen`` equal to ``rejected``, or
    either of them empty (or only whitespace)."""
    for field in PREFERENCE_FIELDS[1:]:
        if not pair[field].strip():
            raise ValueError(f"{where}: '{field}' is empty; a preference pair needs two responses to compare")
    if pair["chosen"] == pair["rejected"]:
        raise ValueError(f"{where}: 'chosen' and 'rejected' are the same text, so the pair prefers nothing")


def parse_preference_pairs(text, source):
    """The preference pairs of the JSON Lines ``text`` (read from ``source``): a list of dicts.

    Each non-blank line must be an object whose ``"prompt"``, ``"chosen"`` and ``"rejected"`` are
    str (other keys are kept), and must carry a preference: ``chosen`` and ``rejected`` differ and
    neither is empty or only whitespace.  Errors name ``source``, the line and what is wrong with it
    (``"<source>:<line>: ..."``).
    """
    pairs = []
    for where, line, pair in jsonl_lines(text, lambda number: f"{source}:{number}"):
        expected = f"{where}: each line must be an object with string fields 'prompt', 'chosen' and 'rejected'"
        if not isinstance(pair, dict):
            raise ValueError(f"{expected}, got {line!r:.200}")
        for field in PREFERENCE_FIELDS:
            if field not in pair:
                raise ValueError(f"{expected}; '{field}' is missing")
            if not isinstance(pair[field], str):
                raise ValueError(f"{expected}; '{field}' is {type(pair[field]).__name__}")
        check_preference(pair, where)
        pairs.append(pair)
    if not pairs:
        raise ValueError(f"{source}: no preference pairs found")
    return pairs


def read_preference_pairs(path):
    """The preference pairs ``{"prompt", "chosen", "rejected"}`` of the JSON Lines file ``path``.

    The file is read by :func:`read_text` (UTF-8, a byte order mark dropped) and checked by
    :func:`parse_preference_pairs`; errors name the file and the line, e.g.
    ``"pairs.jsonl:3: each line must be an object with string fields 'prompt', 'chosen' and
    'rejected'; 'chosen' is missing"``.
    """
    return parse_preference_pairs(read_text(path), path)

r"""GPT-2's pre-tokenisation: cutting text into the pieces that byte-pair merges never cross.

GPT-2 (and every tokenizer minippo trains) first cuts text with this regular expression, trying the
alternatives left to right at each position, the first one that matches winning::

    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+

- an English contraction, lower case only: ``"it's"`` -> ``"it", "'s"`` (but ``"IT'S"`` -> ``"IT", "'", "S"``);
- an optional space and a run of letters, ``\p{L}`` (general categories Lu Ll Lt Lm Lo): ``"今天的天气怎么样"``
  is one piece;
- an optional space and a run of numbers, ``\p{N}`` (Nd Nl No): digits of every script, ``"½"``, ``"²"``;
- an optional space and a run of anything else but white space: punctuation, symbols, emoji, combining
  marks (a mark is not a letter, so ``"e\u0301"`` -> ``"e", "\u0301"``);
- a run of white space that leaves its last character to start the next piece, ``\s+(?!\S)``, or a run
  of white space at the end of the text, ``\s+``.

So ``"Hi  you!"`` -> ``["Hi", " ", " you", "!"]``; every character is matched by some alternative, so the
pieces always join back to the text.

Python's ``re`` has no ``\p{..}`` and its ``\s`` is not GPT-2's, so the three classes are spelled out:

- ``\p{L}`` and ``\p{N}`` are the code-point ranges of :mod:`minippo.text.unicode_tables`, taken from the
  Unicode Character Database at version :data:`UNICODE_VERSION` (16.0.0): the version inside Hugging
  Face ``tokenizers`` 0.23 (its Oniguruma regex engine), which runs ``GPT2TokenizerFast``. Pinning the
  version makes the split the same on every Python; Python's own ``unicodedata`` is 14.0.0 on Python
  3.11 and would miss the 9,272 letters and 120 numbers assigned since (CJK Extension H, Kawi, ...).
- ``\s`` is :data:`WHITE_SPACE`, the 25 code points with Unicode's White_Space property, which is ``\s``
  for Oniguruma and for the ``regex`` module alike. Python's ``\s`` also holds U+001C..U+001F (the
  information separators), which GPT-2 counts as symbols.

Run ``python -m minippo.text.pretokenize`` with a ``unicodedata`` (or ``unicodedata2`` package) of the
version named in :data:`UNICODE_VERSION` to regenerate the tables.
"""
import functools
import os
import re
import sys
import textwrap

from minippo.atomic import atomic_write
from minippo.text.unicode_tables import LETTERS, NUMBERS, UNICODE_VERSION

# Unicode's White_Space property: \t \n \v \f \r, space, U+0085, no-break space, Ogham space mark,
# the en/em/thin/... spaces U+2000..U+200A, line and paragraph separators, narrow no-break space,
# medium mathematical space and the ideographic space U+3000.
WHITE_SPACE = "\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

TABLES_MODULE = os.path.join(os.path.dirname(__file__), "unicode_tables.py")


def parse_ranges(table):
    """Return the ``(first, last)`` code points of a table string such as ``"41-5a aa"``."""
    ranges = []
    for item in table.split():
        first, _, last = item.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return ranges


def character_class(ranges):
    """Return the inside of a ``re`` character class matching the code points of ``ranges``."""
    return "".join(f"\\U{first:08x}-\\U{last:08x}" for first, last in ranges)


@functools.cache
def pretoken_pattern():
    """GPT-2's pattern with the classes spelled out, compiled on first use (its classes hold ~800 ranges)."""
    letter = character_class(parse_ranges(LETTERS))
    number = character_class(parse_ranges(NUMBERS))
    return re.compile(
        rf"'s|'t|'re|'ve|'m|'ll|'d| ?[{letter}]+| ?[{number}]+| ?[^{WHITE_SPACE}{letter}{number}]+"
        rf"|[{WHITE_SPACE}]+(?![^{WHITE_SPACE}])|[{WHITE_SPACE}]+"
    )


def pretokenize(text):
    """Cut ``text`` into GPT-2's pre-tokens: ``"Hi, it's 12"`` -> ``["Hi", ",", " it", "'s", " 12"]``."""
    return pretoken_pattern().findall(text)


# --- regenerating minippo/text/unicode_tables.py -------------------------------------------------


def category_ranges(unicodedata_module, major_category):
    """Return the ``(first, last)`` runs of code points whose general category starts with
    ``major_category`` (``"L"`` for letters, ``"N"`` for numbers) in ``unicodedata_module``."""
    ranges = []
    for code_point in range(sys.maxunicode + 1):
        if unicodedata_module.category(chr(code_point)).startswith(major_category):
            if ranges and ranges[-1][1] == code_point - 1:
                ranges[-1] = (ranges[-1][0], code_point)
            else:
                ranges.append((code_point, code_point))
    return ranges


def format_table(ranges):
    """The table string of ``ranges`` as Python source lines: ``"41-5a aa "`` strings, one per line."""
    items = " ".join(f"{first:x}" if first == last else f"{first:x}-{last:x}" for first, last in ranges)
    return "\n".join(f'    "{line} "' for line in textwrap.wrap(items, 100))


def write_unicode_tables(unicodedata_module, path=TABLES_MODULE):
    """Write the letter and number tables of ``unicodedata_module`` to ``path`` as a Python module."""
    source = (
        'r"""Unicode letter (\\p{L}) and number (\\p{N}) classes for GPT-2\'s pre-tokenisation: '
        "generated, do not edit.\n\n"
        "Written by ``python -m minippo.text.pretokenize`` from the Unicode Character Database\n"
        f"{unicodedata_module.unidata_version}. Each string lists code-point ranges in hexadecimal, "
        '"first-last" or a single code point.\n"""\n'
        f'UNICODE_VERSION = "{unicodedata_module.unidata_version}"\n\n'
        f"LETTERS = (\n{format_table(category_ranges(unicodedata_module, 'L'))}\n)\n\n"
        f"NUMBERS = (\n{format_table(category_ranges(unicodedata_module, 'N'))}\n)\n"
    )
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.write(source)


def find_unicodedata(version):
    """Return Python's ``unicodedata`` or the ``unicodedata2`` package, whichever is at ``version``."""
    import unicodedata

    if unicodedata.unidata_version == version:
        return unicodedata
    try:
        import unicodedata2
    except ImportError:
        unicodedata2 = None
    if unicodedata2 is not None and unicodedata2.unidata_version == version:
        return unicodedata2
    raise SystemExit(
        f"needs the Unicode {version} database: this Python's unicodedata is {unicodedata.unidata_version}; "
        f"pip install unicodedata2=={version}"
    )


if __name__ == "__main__":
    version = sys.argv[1] if len(sys.argv) > 1 else UNICODE_VERSION
    write_unicode_tables(find_unicodedata(version))
    print(f"wrote {TABLES_MODULE} (Unicode {version})")

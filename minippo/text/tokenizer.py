"""Byte-level tokenization: text <-> integer ids.

A tokenizer is a table of *tokens*, each a short byte string.  Encoding turns a
``str`` into its UTF-8 bytes and then into token ids; decoding looks every id up
in the table, joins the bytes and decodes them as UTF-8.  Because the first 256
tokens are the 256 single bytes, every string that UTF-8 can encode can be
encoded, whatever its script: ``"今天"`` is the six bytes ``e4 bb 8a e5 a4 a9``.
Only a lone surrogate (a code point in U+D800..U+DFFF that is not half of a
pair), which UTF-8 cannot represent, makes ``encode`` raise ValueError.

Besides the regular tokens there are *special tokens*, which never come out of
``encode(text)``, even if ``text`` contains the string ``"<eos>"``:

- ``pad_id`` fills the unused positions of a batch (see :meth:`Tokenizer.pad_batch`);
- ``eos_id`` ("end of sequence") marks where a text ends, so a language model can
  learn when to stop.

minippo's own tokenizers put ``<pad>`` and ``<eos>`` right after the regular
tokens; GPT-2 has the single special token ``<|endoftext|>`` (id 50256), which
serves as both (Hugging Face users set pad = eos the same way).

:class:`Tokenizer` holds everything that does not depend on how text is split
into tokens; :class:`ByteTokenizer` uses one token per byte and
:class:`minippo.text.bpe.BPETokenizer` learns longer tokens.
"""
import numpy as np

from minippo.checks import is_integer
from minippo.text import gpt2_files

# Names of the special tokens, in id order after the regular tokens.
SPECIAL_TOKENS = ("<pad>", "<eos>")

# Number of distinct byte values: the regular vocabulary of a ByteTokenizer.
NUM_BYTES = 256


class Tokenizer:
    """Maps text to ids and back through a table of token byte strings.

    ``token_bytes[i]`` is the byte string of token ``i``.  ``special_tokens`` maps
    the name of each special token to its id; by default the names of
    :data:`SPECIAL_TOKENS` take the ids right after the last regular token.  A
    special id may also lie among the regular ones (its entry of ``token_bytes``
    is then never used).  ``pad_token`` and ``eos_token`` name the special tokens
    that serve as ``pad_id`` and ``eos_id``; they may be the same.  Subclasses
    implement :meth:`_encode_text`.
    """

    merges = ()  # (left_id, right_id) pairs merged into longer tokens, lowest rank first: none by default

    def __init__(self, token_bytes, special_tokens=None, pad_token=SPECIAL_TOKENS[0], eos_token=SPECIAL_TOKENS[1]):
        self._token_bytes = tuple(token_bytes)
        if special_tokens is None:
            special_tokens = {name: len(self._token_bytes) + index for index, name in enumerate(SPECIAL_TOKENS)}
        self._special_names = {token_id: name for name, token_id in special_tokens.items()}
        self.pad_id = special_tokens[pad_token]
        self.eos_id = special_tokens[eos_token]
        self.vocab_size = max(len(self._token_bytes), max(self._special_names) + 1)

    def _encode_text(self, text):
        """Return the ids of the regular tokens that make up ``text`` (a list)."""
        raise NotImplementedError

    def _encode_text_end(self, text, count):
        """At least the last ``count`` ids of ``_encode_text(text)`` (all of them if it has fewer), as a list.
        Subclasses that can encode less than the whole text do."""
        return self._encode_text(text)

    def encode(self, text, add_eos=False):
        """Return the token ids of ``text`` as a list of ints.

        With ``add_eos=True`` the end-of-sequence id is appended.  Raises
        TypeError if ``text`` is not a ``str`` and ValueError if it holds a lone
        surrogate, which UTF-8 cannot represent.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._encode_text(text)
        if add_eos:
            ids.append(self.eos_id)
        return ids

    def encode_end(self, text, max_tokens, add_eos=False):
        """The last ``max_tokens`` (>= 1) ids of ``encode(text, add_eos)``, encoding only the end of the text
        they come from where the tokenizer can: a model that keeps the end of a text too long for its
        context pays for what it keeps, not for a 3 MB text.  (A lone surrogate in the part not encoded
        goes unnoticed.)"""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        ids = self._encode_text_end(text, max_tokens - (1 if add_eos else 0))
        if add_eos:
            ids.append(self.eos_id)
        return ids[-max_tokens:]

    def decode(self, ids, skip_special=True):
        """Return the text of the token ids ``ids`` (a sequence or 1-D integer array).

        Special tokens are dropped, or written by name (``"<pad>"``, ``"<eos>"``)
        when ``skip_special=False``.  Bytes that are not valid UTF-8, such as the first
        two bytes of a three-byte character cut off by a sampling model, become
        the replacement character U+FFFD instead of raising an error.

        Raises TypeError for non-integer ids and ValueError for an id outside
        ``0 .. vocab_size - 1``.
        """
        pieces = []
        for token_id in self._check_ids(ids, "ids"):
            special_name = self._special_names.get(token_id)
            if special_name is None:
                pieces.append(self._token_bytes[token_id])
            elif not skip_special:
                pieces.append(special_name.encode("utf-8"))
        return b"".join(pieces).decode("utf-8", errors="replace")

    def pad_batch(self, sequences, pad_left=True):
        """Stack id sequences of different lengths into one padded batch.

        Returns ``(ids, attention_mask)``, two int64 arrays of shape ``(B, T)``
        where ``T`` is the longest length: ``attention_mask`` is 1 at real tokens
        and 0 at padding, which holds ``pad_id``.  By default the padding goes on
        the left, so that every row ends with its last real token and a model can
        append generated tokens to all rows at once; the position of a token is
        then ``cumsum(attention_mask) - 1``.  ``pad_left=False`` pads on the right.
        """
        if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
            raise TypeError(f"sequences must be a list of id sequences, got {type(sequences).__name__}")
        rows = [self._check_ids(row, f"sequences[{index}]") for index, row in enumerate(sequences)]
        width = max((len(row) for row in rows), default=0)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            columns = slice(width - len(row), width) if pad_left else slice(0, len(row))
            ids[index, columns] = row
            attention_mask[index, columns] = 1
        return ids, attention_mask

    def encode_batch(self, texts, add_eos=False, pad_left=True):
        """Encode a list of texts into one padded batch ``(ids, attention_mask)``.

        Same as ``pad_batch([encode(text, add_eos) for text in texts], pad_left)``.
        Decoding a row of ``ids`` gives the text back, as padding is a special token.
        """
        if isinstance(texts, str) or not hasattr(texts, "__len__"):
            raise TypeError(f"texts must be a list of str, got {type(texts).__name__}")
        return self.pad_batch([self.encode(text, add_eos) for text in texts], pad_left)

    def _check_ids(self, ids, name):
        """Return ``ids`` as a list of Python ints, each checked to be a valid id."""
        if isinstance(ids, np.ndarray):
            if ids.ndim != 1 or ids.dtype.kind not in "iu":
                raise TypeError(f"{name} must be a 1-D integer array, got {ids.ndim}-D {ids.dtype}")
            ids = ids.tolist()
        elif isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
            raise TypeError(f"{name} must be a sequence of ints, got {type(ids).__name__}")
        checked = []
        for token_id in ids:
            if not is_integer(token_id):
                raise TypeError(f"{name} must hold ints, got {token_id!r} of type {type(token_id).__name__}")
            if not 0 <= token_id < self.vocab_size:
                raise ValueError(f"{name} holds id {token_id}, outside the vocabulary 0..{self.vocab_size - 1}")
            checked.append(int(token_id))
        return checked

    def gpt2_files(self):
        """This tokenizer in GPT-2's file layout (a :class:`~minippo.text.gpt2_files.GPT2Files`): token ``i``
        keeps id ``i``, each written in GPT-2's byte-level alphabet, the special tokens by name, and
        :attr:`merges` as pairs of tokens.  Hugging Face's GPT-2 tokenizer reading these files gives this
        tokenizer's ids: a byte tokenizer is a GPT-2 vocabulary with no merges.

        Raises ValueError if two tokens have the same bytes, which one ``vocab.json`` entry cannot hold.
        """
        names = [gpt2_files.token_string(token) for token in self._token_bytes]
        names += [self._special_names[token_id] for token_id in range(len(names), self.vocab_size)]
        vocab = {name: token_id for token_id, name in enumerate(names)}
        if len(vocab) < len(names):
            first = next(token_id for token_id, name in enumerate(names) if vocab[name] != token_id)
            raise ValueError(f"tokens {first} and {vocab[names[first]]} are both {names[first]!r}: "
                             "GPT-2's vocab.json cannot hold two tokens with the same bytes")
        merges = [(names[left], names[right]) for left, right in self.merges]
        pad_token, eos_token = (self._special_names[token_id] for token_id in (self.pad_id, self.eos_id))
        return gpt2_files.GPT2Files(vocab, merges, list(dict.fromkeys([eos_token, pad_token])), eos_token, pad_token)

    def save_pretrained(self, directory):
        """Write the tokenizer to ``directory`` in GPT-2's format (``vocab.json``, ``merges.txt``,
        ``tokenizer_config.json``, each atomically; see :meth:`gpt2_files`), which Hugging Face's
        ``GPT2TokenizerFast.from_pretrained`` and :class:`minippo.text.gpt2.GPT2Tokenizer` read, giving
        this tokenizer's ids."""
        gpt2_files.write_pretrained(directory, self.gpt2_files())

    def __repr__(self):
        return f"{type(self).__name__}(vocab_size={self.vocab_size})"


def utf8_bytes(text):
    """Return ``text`` encoded as UTF-8, with a clear error for lone surrogates."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        character = error.object[error.start]
        raise ValueError(
            f"text holds the lone surrogate U+{ord(character):04X}, which UTF-8 cannot encode"
        ) from None


class ByteTokenizer(Tokenizer):
    """One token per UTF-8 byte: ids 0..255 are the bytes, then ``<pad>`` = 256, ``<eos>`` = 257.

    >>> tokenizer = ByteTokenizer()
    >>> tokenizer.encode("Hi!", add_eos=True)
    [72, 105, 33, 257]
    >>> tokenizer.decode([72, 105, 33, 257])
    'Hi!'
    """

    def __init__(self):
        super().__init__(bytes([value]) for value in range(NUM_BYTES))

    def _encode_text(self, text):
        return list(utf8_bytes(text))

    def _encode_text_end(self, text, count):
        return self._encode_text(text[max(0, len(text) - count):])  # count characters hold >= count bytes

"""GPT2Tokenizer: GPT-2's tokenizer, reading and writing Hugging Face's files, ids exactly as theirs.

>>> tokenizer = GPT2Tokenizer.from_pretrained("path/to/gpt2")   # vocab.json + merges.txt, or tokenizer.json
>>> tokenizer.encode("Hello world", add_eos=True)
[15496, 995, 50256]

GPT-2 is a byte-level BPE like :class:`minippo.text.bpe.BPETokenizer` and encodes the same way: the text is
cut into GPT-2's pre-tokens (:mod:`minippo.text.pretokenize`), each pre-token's UTF-8 bytes become the
tokens of single bytes, and the pair of adjacent tokens with the lowest rank in ``merges.txt`` is merged,
everywhere in the pre-token, until no pair is a merge.  Only the bookkeeping differs: GPT-2's ids come
from ``vocab.json`` instead of being ``256 + rank``, and its one special token ``<|endoftext|>`` (id 50256)
lies inside the vocabulary and serves as end of sequence and as padding (as Hugging Face users set it).

Where minippo differs from Hugging Face, on purpose:

- the text ``"<|endoftext|>"`` is encoded as text (``"<", "|", "endoftext", "|", ">"``), like every
  minippo tokenizer, so that a prompt cannot smuggle in an end of sequence; Hugging Face gives 50256
  unless called with ``split_special_tokens=True``, which gives minippo's ids;
- ``decode`` drops special tokens unless ``skip_special=False`` (Hugging Face keeps them by default).
"""
import dataclasses

from minippo.text import gpt2_files
from minippo.text.bpe import ByteLevelBPE
from minippo.text.gpt2_files import BYTE_TO_UNICODE, ENDOFTEXT, GPT2Files, token_bytes
from minippo.text.tokenizer import ByteTokenizer

BYTE_RECORD = "byte"  # what a checkpoint records for a ByteTokenizer, and what older checkpoints mean


class GPT2Tokenizer(ByteLevelBPE):
    """A GPT-2 tokenizer from its vocabulary and merges, usually built by :meth:`from_pretrained`.

    ``vocab`` maps each token, written in GPT-2's byte-level alphabet (``"Ġthe"`` for ``" the"``), to its id;
    the ids must be ``0 .. len(vocab) - 1``.  ``merges`` lists pairs of tokens, lowest rank first; each part
    must be a single byte or made by an earlier merge, and the merged token must be in ``vocab``.
    ``eos_token`` and ``pad_token`` (by default the same) and ``special_tokens`` (other special tokens, such
    as the ``bos_token`` of a ``tokenizer_config.json``) are names in ``vocab``.
    """

    def __init__(self, vocab, merges, eos_token=ENDOFTEXT, pad_token=None, special_tokens=()):
        pad_token = eos_token if pad_token is None else pad_token
        special_tokens = list(dict.fromkeys([eos_token, pad_token, *special_tokens]))
        if isinstance(merges, (str, bytes)) or not hasattr(merges, "__iter__"):
            raise TypeError(f"merges must be a list of (left, right) token pairs, got {type(merges).__name__}")
        check_vocabulary(vocab, special_tokens)
        merged = check_merges(vocab, merges)
        by_id = sorted(vocab, key=vocab.get)
        super().__init__(
            [token_bytes(token) for token in by_id],
            [vocab[BYTE_TO_UNICODE[byte]] for byte in range(256)],
            merged,
            {name: vocab[name] for name in special_tokens},
            pad_token,
            eos_token,
        )
        self.merges = tuple(sorted(merged, key=lambda pair: merged[pair][0]))  # id pairs, by rank
        self._files = GPT2Files(dict(vocab), [tuple(pair) for pair in merges], special_tokens, eos_token, pad_token)

    @classmethod
    def from_pretrained(cls, directory):
        """Read the tokenizer of a Hugging Face GPT-2 directory: ``vocab.json`` + ``merges.txt`` (and the
        special tokens named in ``tokenizer_config.json``), or ``tokenizer.json`` when only that is there.

        Raises FileNotFoundError naming what is missing and ValueError naming the file and the problem
        (invalid JSON, a merge of tokens that are not in the vocabulary, a setting GPT-2 does not have, ...).
        """
        files = gpt2_files.read_pretrained(directory)
        try:
            return cls(files.vocab, files.merges, files.eos_token, files.pad_token, files.special_tokens)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{directory} is not a valid GPT-2 tokenizer: {error}") from None

    def gpt2_files(self):
        """The files this tokenizer was made from (``save_pretrained`` writes them)."""
        return self._files

    def __reduce__(self):
        # The cache cannot be pickled, so a pickle rebuilds the tokenizer from its files.
        files = self._files
        return type(self), (files.vocab, files.merges, files.eos_token, files.pad_token, files.special_tokens)

    def __eq__(self, other):
        if not isinstance(other, GPT2Tokenizer):
            return NotImplemented
        return self._files == other._files


def check_vocabulary(vocab, special_tokens):
    """Check that ``vocab`` maps strings to the ids ``0 .. len(vocab) - 1``, holds the 256 byte tokens and
    the ``special_tokens``; raise TypeError or ValueError naming the problem."""
    if not isinstance(vocab, dict):
        raise TypeError(f"vocab must be a dict of token: id, got {type(vocab).__name__}")
    for token, token_id in vocab.items():
        if not isinstance(token, str) or type(token_id) is not int:
            raise TypeError(f"vocab must map str tokens to int ids, got {token!r}: {token_id!r}")
    if sorted(vocab.values()) != list(range(len(vocab))):
        missing = sorted(set(range(len(vocab))) - set(vocab.values()))
        raise ValueError(f"vocab ids must be 0..{len(vocab) - 1}, each once; no token has id {missing[0]}")
    missing = [byte for byte, token in BYTE_TO_UNICODE.items() if token not in vocab]
    if missing:
        raise ValueError(f"vocab lacks the tokens of {len(missing)} single bytes, e.g. {BYTE_TO_UNICODE[missing[0]]!r} "
                         f"(byte {missing[0]}): text holding them could not be encoded")
    for name in special_tokens:
        if name not in vocab:
            raise ValueError(f"the special token {name!r} is not in vocab")


def check_merges(vocab, merges):
    """Return ``{(left_id, right_id): (rank, merged_id)}`` for ``merges``; raise TypeError or ValueError
    naming the first merge that is not a pair of known tokens made earlier, or that repeats one."""
    made = set(BYTE_TO_UNICODE.values())  # the tokens BPE can have produced before the current merge
    merged = {}
    for rank, pair in enumerate(merges):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(part, str) for part in pair):
            raise TypeError(f"merge {rank} must be a pair of token strings, got {pair!r}")
        for part in pair:
            if part not in vocab:
                raise ValueError(f"merge {rank} {pair[0]} {pair[1]} uses {part!r}, which is not in vocab")
            if part not in made:
                # Hugging Face's Rust and Python implementations disagree on such merges; no trained BPE has one.
                raise ValueError(f"merge {rank} {pair[0]} {pair[1]} uses {part!r} before any merge makes it")
        if pair[0] + pair[1] not in vocab:
            raise ValueError(f"merge {rank} {pair[0]} {pair[1]} makes {pair[0] + pair[1]!r}, which is not in vocab")
        ids = (vocab[pair[0]], vocab[pair[1]])
        if ids in merged:
            raise ValueError(f"merge {rank} {pair[0]} {pair[1]} repeats merge {merged[ids][0]}")
        merged[ids] = (rank, vocab[pair[0] + pair[1]])
        made.add(pair[0] + pair[1])
    return merged


def tokenizer_record(tokenizer):
    """What a minippo checkpoint records about the tokenizer its model was trained with (JSON-friendly):
    ``"byte"`` for a :class:`~minippo.text.tokenizer.ByteTokenizer`, otherwise the tokenizer's GPT-2 files
    (``{"vocab", "merges", "special_tokens", "eos_token", "pad_token"}``, see :meth:`Tokenizer.gpt2_files`)."""
    if type(tokenizer) is ByteTokenizer:
        return BYTE_RECORD
    return dataclasses.asdict(tokenizer.gpt2_files())


def tokenizer_from_record(record, source):
    """The tokenizer :func:`tokenizer_record` recorded (a :class:`GPT2Tokenizer` for recorded files, with the
    same ids as the tokenizer saved); ValueError naming ``source`` if ``record`` is neither."""
    if record == BYTE_RECORD:
        return ByteTokenizer()
    fields = [field.name for field in dataclasses.fields(GPT2Files)]
    if not isinstance(record, dict) or sorted(record) != sorted(fields):
        raise ValueError(f"{source}: the recorded tokenizer must be {BYTE_RECORD!r} or an object with the keys "
                         f"{fields}, got {str(record)[:80]}")
    try:
        return GPT2Tokenizer(record["vocab"], record["merges"], record["eos_token"], record["pad_token"],
                             record["special_tokens"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: the recorded tokenizer is not valid: {error}") from None

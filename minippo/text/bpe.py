"""Byte-level byte-pair encoding (BPE): a tokenizer that learns its own tokens.

Training starts from the 256 single bytes and repeatedly *merges* the most
frequent pair of adjacent tokens into a new token, e.g. ``"t" + "h" -> "th"``,
then ``"th" + "e" -> "the"``.  Each merge adds one token, until the vocabulary has
the requested size.  Frequent words end up as a single token, so a text needs
fewer tokens than bytes, while rare text (any script, any emoji) still falls back
to single bytes: any string that UTF-8 can encode is encoded, and decoding gives
it back exactly.  (A string holding a lone surrogate, which UTF-8 cannot encode,
makes ``encode`` raise ValueError.)

Exactly as GPT-2 does, the text is first cut into *pre-tokens* (a word with its
leading space, a contraction such as ``"'s"``, a run of digits, of punctuation, of
whitespace: :func:`minippo.text.pretokenize.pretokenize`) and merges never cross
a pre-token boundary, so ``"dog."`` and ``"dog!"`` share the token ``"dog"``.

Encoding a pre-token applies the learned merges in the order they were learned (by
*rank*): find the adjacent pair with the lowest rank, merge it everywhere, repeat.
:class:`ByteLevelBPE` does this for any table of ranked merges; it serves
:class:`BPETokenizer` and :class:`minippo.text.gpt2.GPT2Tokenizer` alike, so a
BPETokenizer saved with :meth:`~minippo.text.tokenizer.Tokenizer.save_pretrained` gives the same ids in
Hugging Face's GPT-2 tokenizer as in minippo.
"""
import collections
import functools
import heapq
import itertools
import json

from minippo.atomic import atomic_write
from minippo.checks import is_integer
from minippo.text.files import BYTE_ORDER_MARK
from minippo.text.pretokenize import pretokenize
from minippo.text.tokenizer import NUM_BYTES, SPECIAL_TOKENS, Tokenizer, utf8_bytes

# Identifies a saved tokenizer file; bump the version when the layout changes.
FILE_FORMAT = "minippo-bpe"
FILE_VERSION = 1

# Pre-tokens whose ids are remembered: natural text repeats the same words over and over.
PRETOKEN_CACHE_SIZE = 65536


def merge_pair(tokens, pair, new_id):
    """Return ``tokens`` with every non-overlapping occurrence of ``pair`` replaced by ``new_id``."""
    merged = []
    index = 0
    while index < len(tokens):
        if index + 1 < len(tokens) and (tokens[index], tokens[index + 1]) == pair:
            merged.append(new_id)
            index += 2
        else:
            merged.append(tokens[index])
            index += 1
    return merged


class ByteLevelBPE(Tokenizer):
    """Encodes text by GPT-2's pre-tokens, then byte-pair merges inside each pre-token.

    ``byte_ids[b]`` is the id of the token of the single byte ``b``;
    ``merges[(left_id, right_id)] = (rank, merged_id)``: the pair with the
    lowest rank is merged first.  The other arguments are those of :class:`Tokenizer`.
    """

    def __init__(self, token_bytes, byte_ids, merges, special_tokens=None, pad_token=SPECIAL_TOKENS[0],
                 eos_token=SPECIAL_TOKENS[1]):
        super().__init__(token_bytes, special_tokens, pad_token, eos_token)
        self._byte_ids = tuple(byte_ids)
        self._merges = merges
        self._encode_pretoken = functools.lru_cache(maxsize=PRETOKEN_CACHE_SIZE)(self._merge_pretoken)

    def _encode_text(self, text):
        ids = []
        for pretoken in pretokenize(text):
            ids.extend(self._encode_pretoken(pretoken))
        return ids

    def _encode_text_end(self, text, count):
        # merges stay inside a pre-token, so the last pre-tokens' ids are the last ids of the whole text
        ids = []
        for pretoken in reversed(pretokenize(text)):
            if len(ids) >= count:
                break
            ids[:0] = self._encode_pretoken(pretoken)
        return ids

    def _merge_pretoken(self, pretoken):
        """Return the token ids of one pre-token (a tuple), applying merges by rank.

        Same result as "merge the lowest-ranked pair everywhere, repeat", but each merge costs log n, not
        n: a heap holds the mergeable adjacent pairs as ``(rank, left position, merged id)``; popped in
        order (lowest rank, then leftmost), a pair is merged unless a neighbour's merge has changed it,
        and the new pairs around the merged token are pushed.  (Hugging Face's Rust code does the same.)
        So a pre-token of 16,000 random letters (think of a base64 blob) takes 0.15 s instead of 24 s.
        """
        ids = [self._byte_ids[byte] for byte in utf8_bytes(pretoken)]
        end = len(ids)
        following = list(range(1, end + 1))  # the position of the next live token; ``end`` after the last
        preceding = list(range(-1, end - 1))  # the position of the previous live token; -1 before the first
        merges = self._merges
        heap = [(merges[pair][0], left, merges[pair][1]) for left, pair in enumerate(itertools.pairwise(ids))
                if pair in merges]
        heapq.heapify(heap)
        while heap:
            rank, left, merged_id = heapq.heappop(heap)
            right = following[left]
            if ids[left] is None or right == end or merges.get((ids[left], ids[right])) != (rank, merged_id):
                continue  # merged away, or the pair changed since it was pushed
            ids[left], ids[right] = merged_id, None
            following[left] = following[right]
            if following[left] != end:
                preceding[following[left]] = left
            for first, second in ((preceding[left], left), (left, following[left])):
                merge = merges.get((ids[first], ids[second])) if first >= 0 and second != end else None
                if merge is not None:
                    heapq.heappush(heap, (merge[0], first, merge[1]))
        return tuple(token_id for token_id in ids if token_id is not None)


class BPETokenizer(ByteLevelBPE):
    """A byte-level BPE tokenizer defined by its list of merges.

    ``merges[rank] = (left_id, right_id)`` creates token ``256 + rank`` with the
    bytes of ``left_id`` followed by those of ``right_id``; each id must refer to a
    byte or an earlier merge.  The special tokens follow the merged tokens.  Build
    one with :meth:`train` or :meth:`load`.  A tokenizer can be pickled (for
    example to send it to another process): only its merges are stored.
    """

    def __init__(self, merges):
        if isinstance(merges, (str, bytes)) or not hasattr(merges, "__iter__"):
            raise TypeError(f"merges must be a list of (left_id, right_id) pairs, got {type(merges).__name__}")
        token_bytes = [bytes([value]) for value in range(NUM_BYTES)]
        ranks = {}
        for rank, pair in enumerate(merges):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise TypeError(f"merges[{rank}] must be a pair of token ids, got {pair!r}")
            for token_id in pair:
                if not is_integer(token_id):
                    raise TypeError(f"merges[{rank}] must hold ints, got {token_id!r}")
                if not 0 <= token_id < len(token_bytes):
                    raise ValueError(
                        f"merges[{rank}] refers to token {token_id}; "
                        f"only ids 0..{len(token_bytes) - 1} exist at that point"
                    )
            pair = (int(pair[0]), int(pair[1]))  # a NumPy integer becomes a JSON-friendly int
            if pair in ranks:
                raise ValueError(f"merges[{rank}] repeats merges[{ranks[pair]}] = {pair}")
            ranks[pair] = rank
            token_bytes.append(token_bytes[pair[0]] + token_bytes[pair[1]])
        merged = {pair: (rank, NUM_BYTES + rank) for pair, rank in ranks.items()}
        super().__init__(token_bytes, range(NUM_BYTES), merged)
        self.merges = tuple(ranks)

    def __reduce__(self):
        # The cache cannot be pickled, so a pickle rebuilds the tokenizer from its merges.
        return type(self), (self.merges,)

    @classmethod
    def train(cls, text, vocab_size):
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` tokens.

        ``vocab_size`` counts the 256 bytes and the special tokens, so it must be
        at least 258.  Training stops early once no pair occurs twice; check the
        result's ``vocab_size``.  Ties between equally frequent pairs go to the
        pair with the smallest ids, so the same text always gives the same merges.

        Pair counts are kept up to date incrementally: a merge only recounts the
        distinct pre-tokens that contain the merged pair, weighted by how often each
        pre-token occurs in ``text``.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if not is_integer(vocab_size):
            raise TypeError(f"vocab_size must be an int, got {type(vocab_size).__name__}")
        smallest = NUM_BYTES + len(SPECIAL_TOKENS)
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size must be at least {smallest} (256 bytes + {len(SPECIAL_TOKENS)} "
                f"special tokens), got {vocab_size}"
            )
        pretoken_counts = collections.Counter(pretokenize(text))
        words = [list(utf8_bytes(pretoken)) for pretoken in pretoken_counts]
        word_counts = list(pretoken_counts.values())
        pair_counts = collections.Counter()
        words_with_pair = collections.defaultdict(set)
        for index, word in enumerate(words):
            for pair in zip(word, word[1:]):
                pair_counts[pair] += word_counts[index]
                words_with_pair[pair].add(index)

        merges = []
        while len(merges) < vocab_size - smallest and pair_counts:
            best = max(pair_counts, key=lambda pair: (pair_counts[pair], -pair[0], -pair[1]))
            if pair_counts[best] < 2:
                break
            new_id = NUM_BYTES + len(merges)
            merges.append(best)
            for index in words_with_pair.pop(best):
                old_pairs = collections.Counter(zip(words[index], words[index][1:]))
                words[index] = merge_pair(words[index], best, new_id)
                new_pairs = collections.Counter(zip(words[index], words[index][1:]))
                for pair in old_pairs.keys() | new_pairs.keys():
                    pair_counts[pair] += (new_pairs[pair] - old_pairs[pair]) * word_counts[index]
                    if pair_counts[pair] == 0:
                        del pair_counts[pair]
                for pair in new_pairs:
                    words_with_pair[pair].add(index)
        return cls(merges)

    def save(self, path):
        """Write the merges to ``path`` as JSON.

        The file is written next to ``path`` under a temporary name and then
        renamed over it, so a crash never leaves a half-written tokenizer behind.
        """
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "special_tokens": list(SPECIAL_TOKENS),
            "merges": [list(pair) for pair in self.merges],
        }
        with atomic_write(path, "w", encoding="utf-8") as file:
            json.dump(payload, file)
            file.write("\n")

    @classmethod
    def load(cls, path):
        """Read a tokenizer written by :meth:`save`.

        Raises FileNotFoundError if ``path`` does not exist and ValueError, naming
        the file and the problem, if it is not a valid tokenizer file.
        """
        with open(path, "rb") as file:
            content = file.read()
        # ValueError covers UnicodeDecodeError and JSONDecodeError; arrays or objects
        # nested thousands deep make the JSON decoder raise RecursionError.
        try:
            payload = json.loads(content.decode("utf-8").removeprefix(BYTE_ORDER_MARK))
        except (ValueError, RecursionError) as error:
            raise ValueError(f"{path} is not a BPE tokenizer file: invalid JSON ({error})") from None
        expected = {"format": FILE_FORMAT, "version": FILE_VERSION, "special_tokens": list(SPECIAL_TOKENS)}
        if not isinstance(payload, dict):
            raise ValueError(f"{path} is not a BPE tokenizer file: expected a JSON object")
        for key, value in expected.items():
            # The type check rejects "version": true, which equals 1 in Python.
            if type(payload.get(key)) is not type(value) or payload.get(key) != value:
                raise ValueError(f"{path} is not a BPE tokenizer file: {key!r} must be {value!r}, "
                                 f"got {payload.get(key)!r}")
        if not isinstance(payload.get("merges"), list):
            raise ValueError(f"{path} is not a BPE tokenizer file: 'merges' must be a list of id pairs")
        try:
            return cls(payload["merges"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a BPE tokenizer file: {error}") from None

    def __eq__(self, other):
        if not isinstance(other, BPETokenizer):
            return NotImplemented
        return self.merges == other.merges

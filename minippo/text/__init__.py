"""Tokenizers and the shipped corpus.

- ``minippo.text.tokenizer``  the tokenizer base class and :class:`ByteTokenizer` (one token per byte).
- ``minippo.text.bpe``        :class:`BPETokenizer`, byte-pair encoding trained on your own text.
- ``minippo.text.corpus``     the question-answer dialogues, preference pairs and prompts of the RLHF demo.
- ``minippo.text.files``      ``read_text``: a user's UTF-8 file, with an error naming it when it is not UTF-8;
  ``read_preference_pairs``: the ``{"prompt", "chosen", "rejected"}`` JSON Lines of a reward model.

See ``docs/text.md`` for a guide with examples.
"""
from minippo.text.bpe import BPETokenizer
from minippo.text.tokenizer import SPECIAL_TOKENS, ByteTokenizer, Tokenizer

__all__ = ["BPETokenizer", "ByteTokenizer", "SPECIAL_TOKENS", "Tokenizer"]

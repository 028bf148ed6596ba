"""Tokenizers and the shipped corpus.

- ``minippo.text.tokenizer``  the tokenizer base class and :class:`ByteTokenizer` (one token per byte).
- ``minippo.text.bpe``        :class:`BPETokenizer`, byte-pair encoding trained on your own text.
- ``minippo.text.gpt2``       :class:`GPT2Tokenizer`, GPT-2's tokenizer from Hugging Face's files.
- ``minippo.text.gpt2_files`` reading and writing those files (``vocab.json``, ``merges.txt``, ...).
- ``minippo.text.pretokenize`` GPT-2's pre-tokenisation pattern, with Unicode's letter and number classes.
- ``minippo.text.corpus``     the question-answer dialogues, preference pairs and prompts of the RLHF demo.
- ``minippo.text.template``   :class:`Template`, how a prompt and its response are laid out as text
  (``"Q: {prompt} A: {response}"`` by default), recorded in checkpoints.
- ``minippo.text.files``      ``read_text``: a user's UTF-8 file, with an error naming it when it is not UTF-8;
  ``parse_json``: JSON whose objects may not repeat a key; ``read_preference_pairs``: the
  ``{"prompt", "chosen", "rejected"}`` JSON Lines of a reward model, each pair preferring something.

See ``docs/text.md`` for a guide with examples.
"""
from minippo.text.bpe import BPETokenizer
from minippo.text.gpt2 import GPT2Tokenizer
from minippo.text.tokenizer import SPECIAL_TOKENS, ByteTokenizer, Tokenizer

__all__ = ["SPECIAL_TOKENS", "BPETokenizer", "ByteTokenizer", "GPT2Tokenizer", "Tokenizer"]

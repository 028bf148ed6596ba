"""Rule-based rewards: a fixed rule, not a learned model, judges a response.

In RL on text the environment is a judge that scores what the policy wrote.
The judge can be a learned reward model or a rule.  This module holds the
rules as the trainer calls them, *reward callables* that score a whole batch
(the contract of :mod:`minippo.rewards.contract`)::

    reward(prompts: list[str], responses: list[str]) -> np.ndarray of shape (B,)

- :class:`BleuReward`     :func:`~minippo.rewards.text_metrics.bleu` against the prompt's references
- :class:`RougeReward`    :func:`~minippo.rewards.text_metrics.rouge_l` against the prompt's references
- :class:`KeywordReward`  :func:`keyword_reward`: how many of the wanted keywords the response contains
- :class:`LengthReward`   :func:`length_reward`: how far the response's length is from a target length

Each callable checks its options and tokenises its keywords or references once, when it is built;
scoring a response then only tokenises the response.  :func:`keyword_reward` and
:func:`length_reward` score one text on their own, like the metrics of
:mod:`minippo.rewards.text_metrics`.  Command-line specs such as ``"keyword:polite,thanks"`` are
built by :func:`minippo.rewards.rule_specs.parse_rule_reward`.
"""
import numpy as np

from minippo.checks import check_choice, check_str, finite_number, integer_at_least
from minippo.rewards.contract import check_batch, check_rewards
from minippo.rewards.text_metrics import (
    bleu_from_tokens,
    check_beta,
    check_bleu_options,
    check_references,
    rouge_l_from_tokens,
    tokenize,
    tokenizer_for,
)

KEYWORD_MODES = ("fraction", "any")


# --- keyword rule ----------------------------------------------------------------


def keyword_reward(text, keywords, mode="fraction", case_sensitive=False, level="auto"):
    """Score how many of ``keywords`` appear in ``text``, in [0, 1].

    A keyword appears if its tokens occur consecutively among the text's
    tokens (:func:`~minippo.rewards.text_metrics.tokenize` at ``level``), so
    ``"thank you"`` matches ``"Thank you!"`` but ``"polite"`` does not match
    ``"impolite"``.  Chinese and Japanese are matched by character at the
    default ``level="auto"``, so ``"谢谢"`` matches ``"谢谢你"``.

    - ``mode="fraction"``: (number of keywords found) / (number of keywords);
    - ``mode="any"``: 1.0 if at least one keyword is found, else 0.0.

    Matching ignores case unless ``case_sensitive=True``.  ``keywords`` is a
    str (one keyword) or a non-empty list of str.
    """
    check_str(text, "text")
    tokens_of = tokenizer_for(level)
    keyword_tokens = _keyword_token_lists(keywords, case_sensitive, tokens_of)
    check_choice(mode, "mode", KEYWORD_MODES)
    return _keyword_score(tokens_of(text if case_sensitive else text.lower()), keyword_tokens, mode)


def _keyword_token_lists(keywords, case_sensitive, tokens_of):
    """Check ``keywords`` (a str or a non-empty list of str) and tokenise each one with ``tokens_of``
    (lower-cased unless ``case_sensitive``)."""
    if isinstance(keywords, str):
        keywords = [keywords]
    if not isinstance(keywords, (list, tuple)):
        raise TypeError(f"keywords must be a str or a list of str, got {type(keywords).__name__}")
    if len(keywords) == 0:
        raise ValueError("keywords must hold at least one keyword, got an empty list")
    token_lists = []
    for index, keyword in enumerate(keywords):
        check_str(keyword, f"keywords[{index}]")
        tokens = tokens_of(keyword if case_sensitive else keyword.lower())
        if not tokens:
            raise ValueError(f"keywords[{index}] must hold a non-space character, got {keyword!r}")
        token_lists.append(tokens)
    return token_lists


def _keyword_score(text_tokens, keyword_token_lists, mode):
    """The fraction of keywords whose tokens occur consecutively in ``text_tokens`` (mode "fraction"),
    or 1.0 / 0.0 for some / none (mode "any")."""
    found = [_contains_sequence(text_tokens, tokens) for tokens in keyword_token_lists]
    if mode == "any":
        return float(any(found))
    return sum(found) / len(found)


def _contains_sequence(tokens, sequence):
    """True if ``sequence`` occurs in ``tokens`` as consecutive tokens."""
    width = len(sequence)
    return any(tokens[i : i + width] == sequence for i in range(len(tokens) - width + 1))


# --- length rule -----------------------------------------------------------------


def length_reward(text_or_tokens, target, tolerance=0, level="auto"):
    """Penalise a length n that is off ``target`` by more than ``tolerance``, in (-inf, 0].

    ::

        reward = - max(0, |n - target| - tolerance) / target

    so every length in [target - tolerance, target + tolerance] scores 0 and
    the reward falls by 1 for every ``target`` tokens outside that band.
    With ``tolerance=0`` (default) this is -|n - target| / target.
    ``text_or_tokens`` is a str, whose tokens at ``level`` are counted
    (:func:`~minippo.rewards.text_metrics.tokenize`), or an already tokenised
    list/tuple/1-D array, whose length is n.
    """
    _check_length_options(target, tolerance)
    if isinstance(text_or_tokens, str):
        length = len(tokenize(text_or_tokens, level))
    elif isinstance(text_or_tokens, (list, tuple)) or (
        isinstance(text_or_tokens, np.ndarray) and text_or_tokens.ndim == 1
    ):
        length = len(text_or_tokens)
    else:
        raise TypeError(
            "text_or_tokens must be a str or a list/tuple/1-D array of tokens, "
            f"got {type(text_or_tokens).__name__}"
        )
    return _length_score(length, target, tolerance)


def _check_length_options(target, tolerance):
    integer_at_least(target, "target", 1)
    if finite_number(tolerance, "tolerance") < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")


def _length_score(length, target, tolerance):
    """- max(0, |n - target| - tolerance) / target for a length n."""
    return -max(0.0, abs(length - target) - tolerance) / target


# --- batch reward callables ------------------------------------------------------


class RuleReward:
    """Base class of the batch reward callables built from a rule.

    ``reward(prompts, responses)`` checks the batch, scores every pair with
    :meth:`score` and returns a float64 array of shape (B,).  Subclasses
    check and prepare their options in ``__init__`` and implement
    ``score(prompt, response) -> float``, which trusts its (checked) arguments.
    """

    def score(self, prompt, response):
        """Return the reward of one ``response`` to ``prompt``."""
        raise NotImplementedError

    def __call__(self, prompts, responses):
        check_batch(prompts, responses)
        rewards = [self.score(prompt, response) for prompt, response in zip(prompts, responses)]
        return check_rewards(rewards, responses)


class ReferenceReward(RuleReward):
    """A rule that compares the response with reference texts (base of BLEU and ROUGE-L).

    ``references`` is either

    - a str or a list of str: the same references for every prompt, or
    - a dict mapping each prompt to its reference (str) or references (list
      of str).  Prompts are looked up with surrounding whitespace stripped,
      so keys that differ only by such whitespace are one prompt: their
      references are merged.  A prompt without references raises ValueError.

    The references are tokenised at ``level`` once, here.
    """

    def __init__(self, references, level):
        self.tokens_of, self.level = tokenizer_for(level), level
        if isinstance(references, dict):
            if not references:
                raise ValueError("references must not be an empty dict")
            self.references_by_prompt = {}
            for prompt, prompt_references in references.items():
                check_str(prompt, "a key of references")
                merged = self.references_by_prompt.setdefault(prompt.strip(), [])
                merged.extend(check_references(prompt_references))
            self.shared_references = None
            self.reference_tokens_by_prompt = {
                prompt: self._tokenized(texts) for prompt, texts in self.references_by_prompt.items()
            }
            self.shared_reference_tokens = None
        else:
            self.references_by_prompt = None
            self.shared_references = check_references(references)
            self.reference_tokens_by_prompt = None
            self.shared_reference_tokens = self._tokenized(self.shared_references)

    def _tokenized(self, texts):
        return [self.tokens_of(text) for text in texts]

    def reference_tokens_for(self, prompt):
        """The token lists of the references that responses to ``prompt`` are compared with."""
        if self.reference_tokens_by_prompt is None:
            return self.shared_reference_tokens
        try:
            return self.reference_tokens_by_prompt[prompt.strip()]
        except KeyError:
            raise ValueError(f"references has no entry for the prompt {prompt!r:.200}") from None

    def metric(self, response_tokens, reference_token_lists):
        """Score the tokens of a response against the references' tokens; implemented by subclasses."""
        raise NotImplementedError

    def score(self, prompt, response):
        return self.metric(self.tokens_of(response), self.reference_tokens_for(prompt))


class BleuReward(ReferenceReward):
    """Reward = :func:`~minippo.rewards.text_metrics.bleu` of the response against the prompt's references."""

    def __init__(self, references, max_n=4, smoothing="add1", level="auto"):
        super().__init__(references, level)
        check_bleu_options(max_n, smoothing)
        self.max_n, self.smoothing = max_n, smoothing

    def metric(self, response_tokens, reference_token_lists):
        return bleu_from_tokens(response_tokens, reference_token_lists, self.max_n, self.smoothing)


class RougeReward(ReferenceReward):
    """Reward = :func:`~minippo.rewards.text_metrics.rouge_l` F-measure of the response against the
    prompt's references."""

    def __init__(self, references, beta=1.0, level="auto"):
        super().__init__(references, level)
        check_beta(beta)
        self.beta = beta

    def metric(self, response_tokens, reference_token_lists):
        return rouge_l_from_tokens(response_tokens, reference_token_lists, self.beta)


class KeywordReward(RuleReward):
    """Reward = :func:`keyword_reward` of the response; the prompt is not used."""

    def __init__(self, keywords, mode="fraction", case_sensitive=False, level="auto"):
        self.tokens_of = tokenizer_for(level)
        self.keyword_tokens = _keyword_token_lists(keywords, case_sensitive, self.tokens_of)
        self.mode = check_choice(mode, "mode", KEYWORD_MODES)
        self.keywords = [keywords] if isinstance(keywords, str) else list(keywords)
        self.case_sensitive, self.level = case_sensitive, level

    def score(self, prompt, response):
        text = response if self.case_sensitive else response.lower()
        return _keyword_score(self.tokens_of(text), self.keyword_tokens, self.mode)


class LengthReward(RuleReward):
    """Reward = :func:`length_reward` of the response; the prompt is not used."""

    def __init__(self, target, tolerance=0, level="auto"):
        _check_length_options(target, tolerance)
        self.tokens_of = tokenizer_for(level)
        self.target, self.tolerance, self.level = target, tolerance, level

    def score(self, prompt, response):
        return _length_score(len(self.tokens_of(response)), self.target, self.tolerance)

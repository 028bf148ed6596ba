"""Rule-based rewards: a fixed rule, not a learned model, judges a response.

In RL on text the environment is a judge that scores what the policy wrote.
The judge can be a learned reward model or a rule.  This module holds the
rules:

- ``bleu``         n-gram overlap with reference texts (Papineni et al., 2002)
- ``rouge_l``      longest common subsequence with reference texts (Lin, 2004)
- ``keyword_reward``  how many of the wanted keywords the text contains
- ``length_reward``   how far the text's length is from a target length

Each takes one text and returns one float.  The trainer wants a *reward
callable* instead, which scores a whole batch::

    reward(prompts: list[str], responses: list[str]) -> np.ndarray of shape (B,)

:class:`BleuReward`, :class:`RougeReward`, :class:`KeywordReward` and
:class:`LengthReward` wrap the rules into such callables,
:func:`parse_rule_reward` builds one from a command-line string such as
``"keyword:polite,thanks"``, and :func:`check_rewards` checks what any reward
callable returned before the trainer uses it.

All scores are computed on tokens from :func:`tokenize`, which is *not* the
model's tokenizer: it splits text into words (``level="word"``) or into
characters (``level="char"``, for scripts such as Chinese that do not put
spaces between words).
"""
import json
import math
import re
from collections import Counter

import numpy as np

from minippo.checks import finite_number, integer_at_least, is_real
from minippo.text.files import read_text

LEVELS = ("word", "char")
KEYWORD_MODES = ("fraction", "any")

# A word token is a run of letters, digits and underscores (any script), or a
# single character that is neither such a letter nor whitespace (punctuation).
_WORD_PATTERN = re.compile(r"\w+|[^\w\s]")

# Epsilon of Chen & Cherry's smoothing method 1 (the value NLTK uses).
BLEU_EPSILON = 0.1

# Valid command-line forms of parse_rule_reward, shown in its error message.
RULE_REWARD_FORMS = (
    "bleu:PATH",
    "rouge:PATH",
    "keyword:WORD[,WORD...]",
    "length:N",
)
RULE_REWARD_KINDS = tuple(form.partition(":")[0] for form in RULE_REWARD_FORMS)


# --- tokenisation ----------------------------------------------------------------


def _check_level(level):
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")


def _check_text(text, name):
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")


def tokenize(text, level="word"):
    """Split ``text`` into the tokens that the rule rewards count (a list of str).

    - ``level="word"``: words and punctuation.  A word is a run of letters,
      digits or underscores; every other non-space character is a token of its
      own.  ``"Hi, it's 5pm!"`` -> ``["Hi", ",", "it", "'", "s", "5pm", "!"]``.
      Text without spaces between words stays one token:
      ``"今天天气晴朗"`` -> ``["今天天气晴朗"]``.
    - ``level="char"``: every non-space character is a token, punctuation
      included, so ``"今天天气晴朗"`` gives 6 tokens and ``"a b"`` gives
      ``["a", "b"]``.  Use this level for Chinese, Japanese or Thai.

    Case is kept: ``"The"`` and ``"the"`` are different tokens.
    """
    _check_text(text, "text")
    _check_level(level)
    if level == "word":
        return _WORD_PATTERN.findall(text)
    return [character for character in text if not character.isspace()]


def _references_list(references):
    """Return ``references`` (one str or a non-empty sequence of str) as a list."""
    if isinstance(references, str):
        return [references]
    if not isinstance(references, (list, tuple)):
        raise TypeError(
            f"references must be a str or a list of str, got {type(references).__name__}"
        )
    if len(references) == 0:
        raise ValueError("references must hold at least one reference, got an empty list")
    for index, reference in enumerate(references):
        _check_text(reference, f"references[{index}]")
    return list(references)


# --- BLEU ------------------------------------------------------------------------


def ngram_counts(tokens, n):
    """Count the n-grams of ``tokens``: a Counter mapping each n-tuple to its count.

    A sequence of length L has max(L - n + 1, 0) n-grams.
    """
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision_counts(candidate_tokens, reference_token_lists, n):
    """Return ``(matches, total)`` for the modified n-gram precision p_n = matches / total.

    Each candidate n-gram counts at most as often as it appears in any single
    reference (the *clipped* count)::

        matches = sum over n-grams g of  min(count_cand(g), max_ref count_ref(g))
        total   = sum over n-grams g of  count_cand(g)   (= len(candidate) - n + 1)

    Clipping stops ``"the the the the"`` from scoring well against
    ``"the cat is on the mat"``: ``"the"`` is matched at most twice.
    """
    candidate_counts = ngram_counts(candidate_tokens, n)
    max_reference_counts = Counter()
    for reference_tokens in reference_token_lists:
        max_reference_counts |= ngram_counts(reference_tokens, n)  # |= keeps the max
    matches = sum(
        min(count, max_reference_counts[ngram]) for ngram, count in candidate_counts.items()
    )
    return matches, sum(candidate_counts.values())


def closest_reference_length(candidate_length, reference_lengths):
    """Return the reference length r closest to the candidate length c (ties -> shorter)."""
    return min(reference_lengths, key=lambda length: (abs(length - candidate_length), length))


def brevity_penalty(candidate_length, reference_length):
    """BP = 1 if c > r else exp(1 - r / c); 0 for an empty candidate (c = 0).

    Precision alone rewards short candidates (``"the"`` has p_1 = 1), so BLEU
    multiplies it by a penalty for being shorter than the reference.
    """
    if candidate_length == 0:
        return 0.0
    if candidate_length > reference_length:
        return 1.0
    return math.exp(1.0 - reference_length / candidate_length)


def _smooth_none(matches, totals):
    """p_n = m_n / l_n (and 0 when l_n = 0: the candidate has no n-grams)."""
    return matches / np.maximum(totals, 1)


def _smooth_add1(matches, totals):
    """Lin & Och (2004): p_1 = m_1 / l_1 and p_n = (m_n + 1) / (l_n + 1) for n > 1."""
    precisions = (matches + 1.0) / (totals + 1.0)
    precisions[0] = matches[0] / max(totals[0], 1)
    return precisions


def _smooth_epsilon(matches, totals):
    """Chen & Cherry (2014) method 1: p_n = ε / l_n when m_n = 0 (ε = BLEU_EPSILON)."""
    return np.where(matches > 0, matches, BLEU_EPSILON) / np.maximum(totals, 1)


BLEU_SMOOTHING = {"none": _smooth_none, "add1": _smooth_add1, "epsilon": _smooth_epsilon}


def _check_bleu_options(max_n, smoothing):
    integer_at_least(max_n, "max_n", 1)
    if smoothing not in BLEU_SMOOTHING:
        raise ValueError(f"smoothing must be one of {tuple(BLEU_SMOOTHING)}, got {smoothing!r}")


def bleu(candidate, references, max_n=4, smoothing="add1", level="word"):
    """Sentence BLEU of ``candidate`` against one or more ``references``, in [0, 1].

    With c = len(candidate), r = the reference length closest to c (ties go
    to the shorter reference) and p_n the modified n-gram precisions
    (:func:`modified_precision_counts`, clipped against every reference)::

        BLEU = BP * exp( (1 / N) * sum_{n=1..N} log p_n ),   N = max_n
        BP   = 1 if c > r else exp(1 - r / c)

    A single p_n = 0 makes BLEU 0, which is common for short sentences, hence
    ``smoothing``:

    - ``"none"``: p_n = m_n / l_n as in Papineni et al. (2002);
    - ``"add1"`` (default): p_n = (m_n + 1) / (l_n + 1) for n > 1 (Lin & Och,
      2004), so an identical candidate scores 1.0 whatever its length;
    - ``"epsilon"``: p_n = 0.1 / l_n for the orders with m_n = 0 (Chen &
      Cherry, 2014, method 1).

    Whatever the smoothing, a candidate without a single matching token (m_1
    = 0) and the empty candidate score 0.0.  A candidate shorter than n has no
    n-grams (l_n = 0); its p_n is 0 under "none", 1 under "add1" and 0.1 under
    "epsilon".  ``references`` is a str or a list of str; tokens come from
    :func:`tokenize` at ``level``.
    """
    _check_text(candidate, "candidate")
    references = _references_list(references)
    _check_bleu_options(max_n, smoothing)
    candidate_tokens = tokenize(candidate, level)
    reference_token_lists = [tokenize(reference, level) for reference in references]
    if not candidate_tokens:
        return 0.0

    counts = [
        modified_precision_counts(candidate_tokens, reference_token_lists, n)
        for n in range(1, max_n + 1)
    ]
    matches, totals = np.array(counts, dtype=np.float64).T
    if matches[0] == 0:
        return 0.0
    precisions = BLEU_SMOOTHING[smoothing](matches, totals)
    if np.any(precisions == 0):
        return 0.0
    candidate_length = len(candidate_tokens)
    reference_length = closest_reference_length(
        candidate_length, [len(tokens) for tokens in reference_token_lists]
    )
    geometric_mean = math.exp(np.mean(np.log(precisions)))
    return brevity_penalty(candidate_length, reference_length) * geometric_mean


# --- ROUGE-L ---------------------------------------------------------------------


def lcs_length(a, b):
    """Length of the longest common subsequence of the token sequences ``a`` and ``b``.

    A subsequence keeps the order but may skip tokens: the LCS of
    ``"the cat sat"`` and ``"the big cat"`` is ``"the cat"`` (length 2).
    Dynamic programming over L[i, j] = LCS of a[:i] and b[:j]::

        L[i, j] = max( L[i-1, j],  L[i, j-1],  L[i-1, j-1] + [a[i-1] == b[j-1]] )

    For one row i, the two terms that look at the previous row give a vector
    t[j] = max(L[i-1, j], L[i-1, j-1] + match[j]); the L[i, j-1] term then
    makes row i the running maximum of t, one ``np.maximum.accumulate`` call.
    O(len(a) * len(b)) time, O(len(b)) memory.
    """
    if len(a) == 0 or len(b) == 0:
        return 0
    token_ids = {}
    a_ids = np.array([token_ids.setdefault(token, len(token_ids)) for token in a])
    b_ids = np.array([token_ids.setdefault(token, len(token_ids)) for token in b])
    previous_row = np.zeros(len(b) + 1, dtype=np.int64)  # L[i-1, 0..len(b)]
    for a_id in a_ids:
        match = b_ids == a_id  # match[j-1] is a[i-1] == b[j-1]
        from_above = np.maximum(previous_row[1:], previous_row[:-1] + match)
        previous_row[1:] = np.maximum.accumulate(from_above)
    return int(previous_row[-1])


def f_measure(precision, recall, beta=1.0):
    """F_β = (1 + β²) P R / (R + β² P), and 0 when P or R is 0.

    β = 1 gives F1, the harmonic mean of P and R; β > 1 weighs recall more.
    F_β is the weighted harmonic mean 1 / F = w / R + (1 − w) / P with
    w = β² / (1 + β²) = 1 / (1 + (1/β)²), so it is computed as

        F = P R / (w P + (1 − w) R),

    which never forms β² itself: a huge β (w = 1) gives F = R, a tiny one
    (w = 0) gives F = P, where (1 + β²) would overflow or lose P.
    """
    if precision == 0 or recall == 0:  # F = 0 for every finite β (and w P + (1 − w) R may round to 0)
        return 0.0
    inverse = 1.0 / beta
    weight = 1.0 / (1.0 + inverse * inverse)  # inverse * inverse may overflow to inf (w = 0); ** would raise
    return precision * recall / (weight * precision + (1.0 - weight) * recall)


def _check_beta(beta):
    if not is_real(beta) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a finite positive number, got {beta!r}")


def rouge_l(candidate, references, beta=1.0, level="word"):
    """ROUGE-L F-measure of ``candidate`` against its best reference, in [0, 1].

    For each reference, with LCS = :func:`lcs_length` of the token lists::

        P = LCS / len(candidate),   R = LCS / len(reference),
        F = (1 + β²) P R / (R + β² P)

    and the score is the maximum F over the references.  The default β = 1
    is the F1 reported by common tools (e.g. the ``rouge-score`` package);
    Lin (2004) sets β large so that F is nearly the recall.  An empty
    candidate scores 0.0.  ``references`` is a str or a list of str; tokens
    come from :func:`tokenize` at ``level``.
    """
    _check_text(candidate, "candidate")
    references = _references_list(references)
    _check_beta(beta)
    candidate_tokens = tokenize(candidate, level)
    best = 0.0
    for reference in references:
        reference_tokens = tokenize(reference, level)
        common = lcs_length(candidate_tokens, reference_tokens)
        if common == 0:
            continue
        score = f_measure(common / len(candidate_tokens), common / len(reference_tokens), beta)
        best = max(best, score)
    return best


# --- simple rules ----------------------------------------------------------------


def _contains_sequence(tokens, sequence):
    """True if ``sequence`` occurs in ``tokens`` as consecutive tokens."""
    width = len(sequence)
    return any(tokens[i : i + width] == sequence for i in range(len(tokens) - width + 1))


def keyword_reward(text, keywords, mode="fraction", case_sensitive=False, level="word"):
    """Score how many of ``keywords`` appear in ``text``, in [0, 1].

    A keyword appears if its tokens occur consecutively among the text's
    tokens (:func:`tokenize` at ``level``), so ``"thank you"`` matches
    ``"Thank you!"`` but ``"polite"`` does not match ``"impolite"``.  For
    Chinese use ``level="char"``: ``"谢谢"`` then matches ``"谢谢你"``.

    - ``mode="fraction"``: (number of keywords found) / (number of keywords);
    - ``mode="any"``: 1.0 if at least one keyword is found, else 0.0.

    Matching ignores case unless ``case_sensitive=True``.  ``keywords`` is a
    str (one keyword) or a non-empty list of str.
    """
    _check_text(text, "text")
    keyword_tokens = _keyword_token_lists(keywords, case_sensitive, level)
    _check_keyword_mode(mode)
    text_tokens = tokenize(text if case_sensitive else text.lower(), level)
    found = [_contains_sequence(text_tokens, tokens) for tokens in keyword_tokens]
    if mode == "any":
        return float(any(found))
    return sum(found) / len(found)


def _check_keyword_mode(mode):
    if mode not in KEYWORD_MODES:
        raise ValueError(f"mode must be one of {KEYWORD_MODES}, got {mode!r}")


def _keyword_token_lists(keywords, case_sensitive, level):
    """Tokenise each keyword (lower-cased unless ``case_sensitive``), checking them."""
    if isinstance(keywords, str):
        keywords = [keywords]
    if not isinstance(keywords, (list, tuple)):
        raise TypeError(f"keywords must be a str or a list of str, got {type(keywords).__name__}")
    if len(keywords) == 0:
        raise ValueError("keywords must hold at least one keyword, got an empty list")
    token_lists = []
    for index, keyword in enumerate(keywords):
        _check_text(keyword, f"keywords[{index}]")
        tokens = tokenize(keyword if case_sensitive else keyword.lower(), level)
        if not tokens:
            raise ValueError(f"keywords[{index}] must hold a non-space character, got {keyword!r}")
        token_lists.append(tokens)
    return token_lists


def _check_length_options(target, tolerance):
    integer_at_least(target, "target", 1)
    if finite_number(tolerance, "tolerance") < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")


def length_reward(text_or_tokens, target, tolerance=0, level="word"):
    """Penalise a length n that is off ``target`` by more than ``tolerance``, in (-inf, 0].

    ::

        reward = - max(0, |n - target| - tolerance) / target

    so every length in [target - tolerance, target + tolerance] scores 0 and
    the reward falls by 1 for every ``target`` tokens outside that band.
    With ``tolerance=0`` (default) this is -|n - target| / target.
    ``text_or_tokens`` is a str, whose tokens at ``level`` are counted
    (:func:`tokenize`), or an already tokenised list/tuple/1-D array, whose
    length is n.
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
    return -max(0.0, abs(length - target) - tolerance) / target


# --- batch reward callables ------------------------------------------------------


def check_rewards(rewards, responses):
    """Check the rewards a reward callable returned for ``responses``; return them as float64.

    The rewards must be real numbers (not str, bool or None) of shape (B,),
    B = len(responses), and all finite.  Otherwise this raises ValueError
    (TypeError for non-numbers) that shows the first offending samples: their
    index, response text and reward value.  The trainer calls it on every
    batch, so that a NaN from a reward model stops training at the sample that
    caused it.
    """
    try:
        values = np.asarray(rewards)
    except ValueError as error:  # a ragged nested list
        raise ValueError(f"rewards must have shape (B,) = ({len(responses)},), one per response; {error}") from None
    if values.shape != (len(responses),):
        detail = ""
        if values.ndim == 1 and values.size < len(responses):
            index = values.size
            detail = f"; index {index} has no reward, response {responses[index]!r:.300}"
        elif values.ndim == 1:
            index = len(responses)
            detail = f"; index {index} has reward {values.tolist()[index]!r} but no response"
        raise ValueError(
            f"rewards must have shape (B,) = ({len(responses)},), one per response, "
            f"got shape {values.shape}{detail}"
        )
    # A list or tuple is checked item by item as given: NumPy would turn [True, 1.0] into [1.0, 1.0]
    # and ["a", 1.0] into strings.  A list of Python floats, the common case, needs no closer look.
    mixed_sequence = isinstance(rewards, (list, tuple)) and not all(type(value) is float for value in rewards)
    if mixed_sequence or values.dtype.kind not in "iuf":
        items = list(rewards) if mixed_sequence else values
        bad = np.flatnonzero([not is_real(value) for value in items])
        if bad.size:
            raise TypeError(
                f"rewards must be numbers (real, not str, bool or None); "
                f"{_offending_samples(np.array(items, dtype=object), responses, bad)}"
            )
    values = values.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise ValueError(f"rewards must be finite; {_offending_samples(values, responses, bad)}")
    return values


def _offending_samples(values, responses, bad):
    """"k of B are not:" and the index, reward and response of the first three offending samples."""
    shown = values.tolist()  # Python objects: 'high' and nan rather than np.str_('high') and np.float64(nan)
    samples = "\n".join(
        f"  index {index}: reward {shown[index]!r}, response {responses[index]!r:.300}" for index in bad[:3]
    )
    more = f"\n  ... and {bad.size - 3} more" if bad.size > 3 else ""
    return f"{bad.size} of {values.size} are not:\n{samples}{more}"


def _check_batch(prompts, responses):
    for name, texts in (("prompts", prompts), ("responses", responses)):
        if not isinstance(texts, (list, tuple)):
            raise TypeError(f"{name} must be a list of str, got {type(texts).__name__}")
        for index, text in enumerate(texts):
            _check_text(text, f"{name}[{index}]")
    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses must have the same length, got {len(prompts)} and "
            f"{len(responses)}"
        )


class RuleReward:
    """Base class of the batch reward callables built from a rule.

    ``reward(prompts, responses)`` checks the batch, scores every pair with
    :meth:`score` and returns a float64 array of shape (B,).  Subclasses
    implement ``score(prompt, response) -> float``.
    """

    def score(self, prompt, response):
        """Return the reward of one ``response`` to ``prompt``."""
        raise NotImplementedError

    def __call__(self, prompts, responses):
        _check_batch(prompts, responses)
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
    """

    def __init__(self, references):
        if isinstance(references, dict):
            if not references:
                raise ValueError("references must not be an empty dict")
            self.references_by_prompt = {}
            for prompt, prompt_references in references.items():
                _check_text(prompt, "a key of references")
                merged = self.references_by_prompt.setdefault(prompt.strip(), [])
                merged.extend(_references_list(prompt_references))
            self.shared_references = None
        else:
            self.references_by_prompt = None
            self.shared_references = _references_list(references)

    def references_for(self, prompt):
        """Return the list of references that responses to ``prompt`` are compared with."""
        if self.references_by_prompt is None:
            return self.shared_references
        try:
            return self.references_by_prompt[prompt.strip()]
        except KeyError:
            raise ValueError(f"references has no entry for the prompt {prompt!r:.200}") from None

    def metric(self, response, references):
        """Score ``response`` against ``references``; implemented by subclasses."""
        raise NotImplementedError

    def score(self, prompt, response):
        return self.metric(response, self.references_for(prompt))


class BleuReward(ReferenceReward):
    """Reward = :func:`bleu` of the response against the prompt's references."""

    def __init__(self, references, max_n=4, smoothing="add1", level="word"):
        super().__init__(references)
        _check_bleu_options(max_n, smoothing)
        _check_level(level)
        self.max_n, self.smoothing, self.level = max_n, smoothing, level

    def metric(self, response, references):
        return bleu(response, references, self.max_n, self.smoothing, self.level)


class RougeReward(ReferenceReward):
    """Reward = :func:`rouge_l` F-measure of the response against the prompt's references."""

    def __init__(self, references, beta=1.0, level="word"):
        super().__init__(references)
        _check_beta(beta)
        _check_level(level)
        self.beta, self.level = beta, level

    def metric(self, response, references):
        return rouge_l(response, references, self.beta, self.level)


class KeywordReward(RuleReward):
    """Reward = :func:`keyword_reward` of the response; the prompt is not used."""

    def __init__(self, keywords, mode="fraction", case_sensitive=False, level="word"):
        _keyword_token_lists(keywords, case_sensitive, level)
        _check_keyword_mode(mode)
        self.keywords = [keywords] if isinstance(keywords, str) else list(keywords)
        self.mode, self.case_sensitive, self.level = mode, case_sensitive, level

    def score(self, prompt, response):
        return keyword_reward(response, self.keywords, self.mode, self.case_sensitive, self.level)


class LengthReward(RuleReward):
    """Reward = :func:`length_reward` of the response; the prompt is not used."""

    def __init__(self, target, tolerance=0, level="word"):
        _check_length_options(target, tolerance)
        _check_level(level)
        self.target, self.tolerance, self.level = target, tolerance, level

    def score(self, prompt, response):
        return length_reward(response, self.target, self.tolerance, self.level)


# --- command-line specs ----------------------------------------------------------


def load_references(path):
    """Load references from a file, in the form :class:`ReferenceReward` accepts.

    - ``*.jsonl``: one JSON object per line, ``{"prompt": ..., "reference": ...}``
      with a str, or ``"references"`` with a non-empty list of str.  Returns a
      dict prompt -> list of references (lines with the same prompt add up;
      :class:`ReferenceReward` also merges prompts that differ only by
      surrounding whitespace).
    - any other file: plain text, one reference per line (blank lines are
      skipped), shared by every prompt.  Returns a list of str.

    The file must be UTF-8 text.  Errors name the file, and for JSONL the line.
    """
    try:
        text = read_text(path)
    except FileNotFoundError:
        raise ValueError(f"reference file {path!r} does not exist") from None
    except ValueError as error:  # not UTF-8
        raise ValueError(f"reference file {error}") from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line]
    if not lines:
        raise ValueError(f"reference file {path!r} holds no reference")
    if not path.endswith(".jsonl"):
        return [line for _, line in lines]

    references_by_prompt = {}
    for number, line in lines:
        where = f"{path}, line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where}: not valid JSON ({error})") from None
        if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
            raise ValueError(f"{where}: expected an object with a str 'prompt', got {line!r:.200}")
        if isinstance(record.get("reference"), str):
            line_references = [record["reference"]]
        elif isinstance(record.get("references"), list):
            try:
                line_references = _references_list(record["references"])
            except (TypeError, ValueError) as error:
                raise type(error)(f"{where}: {error}") from None
        else:
            raise ValueError(
                f"{where}: expected a str 'reference' or a list 'references', got {line!r:.200}"
            )
        references_by_prompt.setdefault(record["prompt"], []).extend(line_references)
    return references_by_prompt


def parse_rule_reward(spec):
    """Build a rule reward callable from a command-line string.

    ========================  ==========================================================
    ``bleu:PATH``             :class:`BleuReward` with the references in PATH
    ``rouge:PATH``            :class:`RougeReward` with the references in PATH
    ``keyword:WORD[,WORD..]`` :class:`KeywordReward`, e.g. ``keyword:polite,thank you``
    ``length:N``              :class:`LengthReward` with target N tokens, e.g. ``length:40``
    ========================  ==========================================================

    PATH is read by :func:`load_references` (``.jsonl``: references per
    prompt; otherwise one shared reference per line).  Options keep their
    defaults (word level, BLEU with add-1 smoothing, ROUGE-L F1).  An unknown
    or malformed spec raises ValueError listing the valid forms.
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str, got {type(spec).__name__}")
    kind, separator, argument = spec.partition(":")
    kind, argument = kind.strip().lower(), argument.strip()
    valid_forms = f"valid forms: {', '.join(RULE_REWARD_FORMS)}"
    if not separator or not argument or kind not in RULE_REWARD_KINDS:
        raise ValueError(f"unknown rule reward spec {spec!r}; {valid_forms}")
    if kind == "bleu":
        return BleuReward(load_references(argument))
    if kind == "rouge":
        return RougeReward(load_references(argument))
    if kind == "keyword":
        keywords = [keyword.strip() for keyword in argument.split(",") if keyword.strip()]
        if not keywords:
            raise ValueError(f"spec {spec!r} names no keyword; {valid_forms}")
        return KeywordReward(keywords)
    if not argument.isdigit() or int(argument) < 1:
        raise ValueError(f"spec {spec!r}: N must be a positive integer; {valid_forms}")
    return LengthReward(int(argument))

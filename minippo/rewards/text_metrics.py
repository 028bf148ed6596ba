"""Text metrics that compare a candidate text with reference texts: BLEU and ROUGE-L.

- :func:`tokenize`  the tokens every metric counts: words (``level="word"``), characters
  (``level="char"``), or by default words with every Chinese or Japanese character a token of its own
  (``level="auto"``: scripts that put no spaces between words are counted by character, others by
  word).  This is *not* the model's tokenizer.
- :func:`bleu`      n-gram precision with a brevity penalty (Papineni et al., 2002), built from
  :func:`ngram_counts`, :func:`modified_precision_counts`, :func:`closest_reference_length` and
  :func:`brevity_penalty`.
- :func:`rouge_l`   the F-measure of the longest common subsequence (Lin, 2004), built from
  :func:`lcs_length` and :func:`f_measure`.

:func:`bleu` and :func:`rouge_l` take texts and check them; :func:`bleu_from_tokens` and
:func:`rouge_l_from_tokens` compute the same scores from token lists and trust their inputs, so a
caller that scores many responses against the same references (the reward callables of
:mod:`minippo.rewards.rules`) checks and tokenises the references once.
"""
import math
import re
from collections import Counter

import numpy as np

from minippo.checks import check_choice, check_str, integer_at_least, is_real

# A word token is a run of letters, digits and underscores (any script), or a
# single character that is neither such a letter nor whitespace (punctuation).
WORD_PATTERN = re.compile(r"\w+|[^\w\s]")
# Characters of the scripts written without spaces between words: kana and CJK ideographs (Unicode blocks
# Hiragana, Katakana, CJK Unified Ideographs and their extensions, CJK Compatibility Ideographs).
CJK_CHARACTERS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# As WORD_PATTERN, but each CJK character is a token of its own and never part of a word.
AUTO_PATTERN = re.compile(f"[{CJK_CHARACTERS}]|[^\\W{CJK_CHARACTERS}]+|[^\\w\\s]")

# Epsilon of Chen & Cherry's smoothing method 1 (the value NLTK uses).
BLEU_EPSILON = 0.1


# --- tokenisation ----------------------------------------------------------------


def word_tokens(text):
    """Words and punctuation: ``"Hi, it's 5pm!"`` -> ``["Hi", ",", "it", "'", "s", "5pm", "!"]``."""
    return WORD_PATTERN.findall(text)


def auto_tokens(text):
    """Words and punctuation, with every Chinese or Japanese character a token of its own:
    ``"Hi, 我不知道。"`` -> ``["Hi", ",", "我", "不", "知", "道", "。"]``."""
    return AUTO_PATTERN.findall(text)


def char_tokens(text):
    """Every non-space character: ``"今天 晴朗"`` -> ``["今", "天", "晴", "朗"]``."""
    return [character for character in text if not character.isspace()]


TOKENIZERS = {"auto": auto_tokens, "word": word_tokens, "char": char_tokens}
LEVELS = tuple(TOKENIZERS)


def tokenizer_for(level):
    """The function that splits a text into the tokens of ``level`` (``"auto"``, ``"word"`` or ``"char"``),
    checked."""
    return TOKENIZERS[check_choice(level, "level", LEVELS)]


def tokenize(text, level="auto"):
    """Split ``text`` into the tokens that the rule rewards count (a list of str).

    - ``level="auto"`` (the default): words and punctuation as at ``"word"``
      level, but every Chinese or Japanese character (kana, CJK ideographs) is a
      token of its own, as those scripts put no spaces between words:
      ``"Hi, 我不知道。"`` -> ``["Hi", ",", "我", "不", "知", "道", "。"]``.  Text
      without such characters is split exactly as at ``"word"`` level.
    - ``level="word"``: words and punctuation.  A word is a run of letters,
      digits or underscores; every other non-space character is a token of its
      own.  ``"Hi, it's 5pm!"`` -> ``["Hi", ",", "it", "'", "s", "5pm", "!"]``.
      Text without spaces between words stays one token:
      ``"今天天气晴朗"`` -> ``["今天天气晴朗"]``.
    - ``level="char"``: every non-space character is a token, punctuation
      included, so ``"今天天气晴朗"`` gives 6 tokens and ``"a b"`` gives
      ``["a", "b"]``.  Use this level for Thai, or for Latin-script text scored
      by character.

    Case is kept: ``"The"`` and ``"the"`` are different tokens.
    """
    check_str(text, "text")
    return tokenizer_for(level)(text)


def check_references(references):
    """``references`` (one str or a non-empty list or tuple of str) as a list of str."""
    if isinstance(references, str):
        return [references]
    if not isinstance(references, (list, tuple)):
        raise TypeError(
            f"references must be a str or a list of str, got {type(references).__name__}"
        )
    if len(references) == 0:
        raise ValueError("references must hold at least one reference, got an empty list")
    for index, reference in enumerate(references):
        check_str(reference, f"references[{index}]")
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


def check_bleu_options(max_n, smoothing):
    """Check the options of :func:`bleu`: ``max_n`` an integer >= 1, ``smoothing`` a key of BLEU_SMOOTHING."""
    integer_at_least(max_n, "max_n", 1)
    check_choice(smoothing, "smoothing", tuple(BLEU_SMOOTHING))


def bleu(candidate, references, max_n=4, smoothing="add1", level="auto"):
    """Sentence BLEU of ``candidate`` against one or more ``references``, in [0, 1].

    With c = len(candidate), r = the reference length closest to c (ties go
    to the shorter reference) and p_n the modified n-gram precisions
    (:func:`modified_precision_counts`, clipped against every reference)::

        BLEU = BP * exp( (1 / N) * sum_{n=1..N} log p_n ),   N = max_n
        BP   = 1 if c > r else exp(1 - r / c)

    that is, the brevity penalty (:func:`brevity_penalty`) times the geometric
    mean of p_1 .. p_N.  A single p_n = 0 makes BLEU 0, which is common for
    short sentences, hence ``smoothing``:

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
    check_str(candidate, "candidate")
    references = check_references(references)
    check_bleu_options(max_n, smoothing)
    tokens_of = tokenizer_for(level)
    reference_token_lists = [tokens_of(reference) for reference in references]
    return bleu_from_tokens(tokens_of(candidate), reference_token_lists, max_n, smoothing)


def bleu_from_tokens(candidate_tokens, reference_token_lists, max_n, smoothing):
    """BLEU = BP * exp((1 / N) * sum_n log p_n) of a tokenised candidate against tokenised references.

    The score of :func:`bleu`, which checks its arguments and tokenises them first; this function
    trusts them (``reference_token_lists`` a non-empty list of token lists, valid options).
    """
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


def check_beta(beta):
    """Check the β of :func:`rouge_l`: a finite number > 0 (ValueError otherwise, whatever its type)."""
    if not is_real(beta) or not 0 < beta < math.inf:
        raise ValueError(f"beta must be a finite positive number, got {beta!r}")


def rouge_l(candidate, references, beta=1.0, level="auto"):
    """ROUGE-L F-measure of ``candidate`` against its best reference, in [0, 1].

    For each reference, with LCS = :func:`lcs_length` of the token lists::

        P = LCS / len(candidate),   R = LCS / len(reference),
        F = (1 + β²) P R / (R + β² P)

    (:func:`f_measure`) and the score is the maximum F over the references.
    The default β = 1 is the F1 reported by common tools (e.g. the
    ``rouge-score`` package); Lin (2004) sets β large so that F is nearly the
    recall.  An empty candidate scores 0.0.  ``references`` is a str or a list
    of str; tokens come from :func:`tokenize` at ``level``.
    """
    check_str(candidate, "candidate")
    references = check_references(references)
    check_beta(beta)
    tokens_of = tokenizer_for(level)
    reference_token_lists = [tokens_of(reference) for reference in references]
    return rouge_l_from_tokens(tokens_of(candidate), reference_token_lists, beta)


def rouge_l_from_tokens(candidate_tokens, reference_token_lists, beta):
    """max over references of F_β(P = LCS / len(candidate), R = LCS / len(reference)), from token lists.

    The score of :func:`rouge_l`, which checks its arguments and tokenises them first; this function
    trusts them.
    """
    best = 0.0
    for reference_tokens in reference_token_lists:
        common = lcs_length(candidate_tokens, reference_tokens)
        if common == 0:
            continue
        score = f_measure(common / len(candidate_tokens), common / len(reference_tokens), beta)
        best = max(best, score)
    return best

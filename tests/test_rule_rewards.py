"""Tests for the rule rewards: text metrics (BLEU, ROUGE-L), keyword and length rules, reward callables,
specs and the reward contract."""
import json
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minippo.rewards import (
    ArithmeticReward,
    BleuReward,
    KeywordReward,
    LengthReward,
    RougeReward,
    bleu,
    check_rewards,
    keyword_reward,
    lcs_length,
    length_reward,
    parse_rule_reward,
    rouge_l,
    tokenize,
)
from minippo.rewards.text_metrics import (
    bleu_from_tokens,
    brevity_penalty,
    closest_reference_length,
    modified_precision_counts,
    rouge_l_from_tokens,
)

CAT_REFERENCE = "the cat is on the mat"

# Sentences over a small vocabulary, so that random pairs share n-grams.
WORDS = ["the", "cat", "sat", "on", "mat", "a", "is", "dog"]
sentences = st.lists(st.sampled_from(WORDS), max_size=12).map(" ".join)
non_empty_sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)


# --- tokenize --------------------------------------------------------------------


def test_word_level_separates_punctuation_and_splits_on_whitespace():
    assert tokenize("Hi, it's 5pm!\n ok") == ["Hi", ",", "it", "'", "s", "5pm", "!", "ok"]
    assert tokenize("   ") == []


def test_char_level_makes_every_non_space_character_a_token():
    assert tokenize("今天天气晴朗", level="char") == ["今", "天", "天", "气", "晴", "朗"]
    assert tokenize("a b,\tc", level="char") == ["a", "b", ",", "c"]
    # At word level a run of Chinese characters is one "word".
    assert tokenize("今天天气晴朗", level="word") == ["今天天气晴朗"]


def test_tokenize_rejects_bad_input():
    with pytest.raises(TypeError, match="text must be a str"):
        tokenize(["a"])
    with pytest.raises(ValueError, match="level must be one of"):
        tokenize("a", level="byte")


# --- BLEU ------------------------------------------------------------------------


def test_clipping_counts_a_word_at_most_as_often_as_in_a_reference():
    # "the the the the": 4 unigrams "the"; the reference holds "the" twice -> 2 / 4.
    candidate = tokenize("the the the the")
    assert modified_precision_counts(candidate, [tokenize(CAT_REFERENCE)], 1) == (2, 4)
    # The clip is the max count over references: "the the the" holds it 3 times.
    references = [tokenize(CAT_REFERENCE), tokenize("the the the")]
    assert modified_precision_counts(candidate, references, 1) == (3, 4)


def test_bleu_of_the_the_the_the():
    # c = 4, r = 6 -> BP = exp(1 - 6/4) = exp(-0.5).
    # n:        1      2           3           4
    # n-grams   4      3 "the the"  2           1
    # matches   2      0            0           0
    # add1      2/4    (0+1)/(3+1)  (0+1)/(2+1) (0+1)/(1+1)
    expected = math.exp(-0.5) * (1 / 2 * 1 / 4 * 1 / 3 * 1 / 2) ** 0.25
    assert bleu("the the the the", CAT_REFERENCE) == pytest.approx(expected, rel=1e-12)
    assert bleu("the the the the", CAT_REFERENCE, smoothing="none") == 0.0
    # Unigrams only: BP * p_1 = exp(-0.5) * 2/4.
    assert bleu("the the the the", CAT_REFERENCE, max_n=1, smoothing="none") == pytest.approx(
        0.5 * math.exp(-0.5), rel=1e-12
    )


def test_bleu_of_the_cat_sat_on_the_mat():
    # candidate "the cat sat on the mat" vs reference "the cat is on the mat", c = r = 6, BP = 1.
    # p_1 = 5/6  (the x2, cat, on, mat; not "sat")
    # p_2 = 3/5  ("the cat", "on the", "the mat")
    # p_3 = 1/4  ("on the mat")
    # p_4 = 0/3
    candidate = "the cat sat on the mat"
    assert bleu(candidate, CAT_REFERENCE, smoothing="none") == 0.0
    assert bleu(candidate, CAT_REFERENCE, max_n=2, smoothing="none") == pytest.approx(
        math.sqrt(5 / 6 * 3 / 5), rel=1e-12
    )
    # add1: 5/6 * (3+1)/(5+1) * (1+1)/(4+1) * (0+1)/(3+1) = 1/18.
    assert bleu(candidate, CAT_REFERENCE, smoothing="add1") == pytest.approx(
        (1 / 18) ** 0.25, rel=1e-12
    )
    # epsilon: 5/6 * 3/5 * 1/4 * 0.1/3 = 1/240.
    assert bleu(candidate, CAT_REFERENCE, smoothing="epsilon") == pytest.approx(
        (1 / 240) ** 0.25, rel=1e-12
    )


def test_brevity_penalty_for_a_short_candidate():
    # "the cat": p_1 = 2/2, p_2 = 1/1, but c = 2 < r = 6 -> BP = exp(1 - 6/2) = exp(-2).
    assert brevity_penalty(2, 6) == pytest.approx(math.exp(-2))
    assert brevity_penalty(7, 6) == 1.0
    assert brevity_penalty(6, 6) == 1.0  # exp(1 - 6/6)
    assert bleu("the cat", CAT_REFERENCE, max_n=2, smoothing="none") == pytest.approx(
        math.exp(-2), rel=1e-12
    )


def test_closest_reference_length_breaks_ties_towards_the_shorter():
    assert closest_reference_length(5, [6, 4]) == 4
    assert closest_reference_length(5, [8, 6, 2]) == 6
    # "the cat on the mat" (c = 5) against references of lengths 6 and 4: both one away,
    # r = 4 < c so BP = 1, and every unigram and bigram is matched by some reference.
    references = [CAT_REFERENCE, "the cat on mat"]
    assert bleu("the cat on the mat", references, max_n=2, smoothing="none") == 1.0


def test_bleu_chinese_at_char_level():
    # 今天天气晴朗 (c = 6) vs 今天天气很晴朗 (r = 7): BP = exp(1 - 7/6).
    # p_1 = 6/6, p_2 = 4/5 (今天 天天 天气 晴朗), p_3 = 2/4 (今天天 天天气), p_4 = 1/3 (今天天气).
    expected = math.exp(-1 / 6) * (1 * 4 / 5 * 2 / 4 * 1 / 3) ** 0.25
    score = bleu("今天天气晴朗", ["今天天气很晴朗"], smoothing="none", level="char")
    assert score == pytest.approx(expected, rel=1e-12)


def test_bleu_identical_is_one_and_disjoint_is_zero():
    assert bleu(CAT_REFERENCE, CAT_REFERENCE, smoothing="none") == 1.0
    assert bleu("hello", "hello") == 1.0  # add1 keeps p_2..p_4 = (0+1)/(0+1)
    assert bleu("dogs bark loudly today", CAT_REFERENCE, smoothing="none") == 0.0
    assert bleu("dogs bark loudly today", CAT_REFERENCE, smoothing="add1") == 0.0


def test_bleu_of_an_empty_candidate_is_zero():
    assert bleu("", CAT_REFERENCE) == 0.0
    assert bleu("  \n", [CAT_REFERENCE, "a mat"]) == 0.0


def test_bleu_takes_the_best_reference_per_ngram():
    references = ["the cat is on the mat", "there is a cat on the mat"]
    one = bleu("the cat on the mat", references[:1])
    both = bleu("the cat on the mat", references)
    assert both >= one


def test_bleu_rejects_bad_arguments():
    with pytest.raises(TypeError, match="candidate must be a str"):
        bleu(["the", "cat"], CAT_REFERENCE)
    with pytest.raises(TypeError, match="references must be a str or a list of str"):
        bleu("the cat", None)
    with pytest.raises(TypeError, match=r"references\[1\] must be a str"):
        bleu("the cat", ["the cat", 3])
    with pytest.raises(ValueError, match="references must hold at least one"):
        bleu("the cat", [])
    with pytest.raises(ValueError, match="max_n must be an integer >= 1, got 0"):
        bleu("the cat", CAT_REFERENCE, max_n=0)
    with pytest.raises(ValueError, match="smoothing must be one of"):
        bleu("the cat", CAT_REFERENCE, smoothing="add2")


@settings(max_examples=200, deadline=None)
@given(sentences, st.lists(sentences, min_size=1, max_size=3), st.sampled_from(["none", "add1", "epsilon"]))
def test_bleu_is_between_zero_and_one(candidate, references, smoothing):
    assert 0.0 <= bleu(candidate, references, smoothing=smoothing) <= 1.0


@settings(max_examples=100, deadline=None)
@given(non_empty_sentences)
def test_bleu_of_a_sentence_against_itself_is_one(sentence):
    assert bleu(sentence, sentence) == pytest.approx(1.0)
    if len(sentence.split()) >= 4:
        assert bleu(sentence, sentence, smoothing="none") == pytest.approx(1.0)


NLTK_SMOOTHING = {"none": "method0", "add1": "method2", "epsilon": "method1"}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(WORDS), min_size=4, max_size=12).map(" ".join),
    st.lists(sentences, min_size=1, max_size=3),
    st.sampled_from(sorted(NLTK_SMOOTHING)),
)
def test_bleu_matches_nltk(candidate, references, smoothing):
    # Candidates have >= 4 tokens: for shorter ones NLTK counts l_n = 0 as 1 in add1.
    bleu_score = pytest.importorskip("nltk.translate.bleu_score")
    smoothing_function = getattr(bleu_score.SmoothingFunction(), NLTK_SMOOTHING[smoothing])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns about zero counts without smoothing
        expected = bleu_score.sentence_bleu(
            [tokenize(reference) for reference in references],
            tokenize(candidate),
            smoothing_function=smoothing_function,
        )
    # Without smoothing NLTK replaces p_n = 0 by the smallest float, ~1e-77 instead of 0.
    assert bleu(candidate, references, smoothing=smoothing) == pytest.approx(expected, abs=1e-12)


# --- ROUGE-L ---------------------------------------------------------------------


def lcs_length_by_loops(a, b):
    """The textbook O(mn) table, to check the vectorised row update against."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if a[i - 1] == b[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def test_lcs_length_examples():
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # "BCBA" (CLRS)
    assert lcs_length(tokenize("the cat sat on the mat"), tokenize(CAT_REFERENCE)) == 5
    assert lcs_length([], ["a"]) == 0
    assert lcs_length(["a", "b"], ["c"]) == 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from("abcd"), max_size=15), st.lists(st.sampled_from("abcd"), max_size=15))
def test_lcs_length_matches_the_loop_table_and_is_at_most_the_shorter_length(a, b):
    length = lcs_length(a, b)
    assert length == lcs_length_by_loops(a, b)
    assert length <= min(len(a), len(b))
    assert length == lcs_length(b, a)


def test_rouge_l_examples_from_lin_2004():
    # Reference "police killed the gunman".
    # "police kill the gunman":  LCS "police the gunman" = 3, P = R = 3/4 -> F = 0.75.
    # "the gunman kill police":  LCS "the gunman" = 2,        P = R = 2/4 -> F = 0.5.
    reference = "police killed the gunman"
    assert rouge_l("police kill the gunman", reference) == pytest.approx(0.75)
    assert rouge_l("the gunman kill police", reference) == pytest.approx(0.5)


def test_rouge_l_cat_example_and_max_over_references():
    # LCS("the cat sat on the mat", "the cat is on the mat") = "the cat on the mat" = 5 -> F = 5/6.
    assert rouge_l("the cat sat on the mat", CAT_REFERENCE) == pytest.approx(5 / 6)
    # The second reference is the candidate itself, so the maximum is 1.
    assert rouge_l("the cat sat", [CAT_REFERENCE, "the cat sat"]) == 1.0


def test_rouge_l_beta_weighs_recall():
    # "a b c" vs "a b c d e f": LCS = 3, P = 1, R = 1/2.
    # F1 = 2 * 1 * 0.5 / (0.5 + 1) = 2/3;  F_2 = 5 * 0.5 / (0.5 + 4) = 5/9.
    assert rouge_l("a b c", "a b c d e f") == pytest.approx(2 / 3)
    assert rouge_l("a b c", "a b c d e f", beta=2.0) == pytest.approx(5 / 9)


def test_rouge_l_chinese_at_char_level():
    # 今天天气晴朗 (6 chars) is a subsequence of 今天天气很晴朗 (7 chars): LCS = 6,
    # P = 6/6, R = 6/7, F1 = 2 * (6/7) / (1 + 6/7) = 12/13.
    candidate_tokens = tokenize("今天天气晴朗", "char")
    assert lcs_length(candidate_tokens, tokenize("今天天气很晴朗", "char")) == 6
    assert rouge_l("今天天气晴朗", "今天天气很晴朗", level="char") == pytest.approx(12 / 13)
    # At word level each sentence is one token, and they differ.
    assert rouge_l("今天天气晴朗", "今天天气很晴朗", level="word") == 0.0


def test_rouge_l_identical_empty_and_disjoint():
    assert rouge_l(CAT_REFERENCE, CAT_REFERENCE) == 1.0
    assert rouge_l("", CAT_REFERENCE) == 0.0
    assert rouge_l("dogs bark", CAT_REFERENCE) == 0.0
    assert rouge_l("the cat", "") == 0.0


@pytest.mark.parametrize("beta", [0, -1.0, math.inf, math.nan, "2"])
def test_rouge_l_rejects_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be a finite positive number"):
        rouge_l("a", "a", beta=beta)
    with pytest.raises(ValueError, match="beta must be a finite positive number"):
        RougeReward("a", beta=beta)


def test_rouge_l_extreme_beta_gives_recall_or_precision():
    # "a b" vs "a": LCS = 1, P = 1/2, R = 1.  F_β → R as β → ∞ and → P as β → 0; β² would overflow.
    assert rouge_l("a b", "a", beta=1e200) == 1.0
    assert rouge_l("a b", "a", beta=1e-200) == 0.5
    # F = (1 + β²) P R / (R + β² P) = (1 + β²) / (2 + β²) with P = 1/2, R = 1
    assert rouge_l("a b", "a", beta=1e5) == pytest.approx((1 + 1e10) / (2 + 1e10), rel=1e-15)
    # with P or R = 0, F = 0 for any β, even where w P + (1 − w) R rounds to 0
    assert rouge_l("b", "a", beta=1e200) == 0.0 and rouge_l("a b c", "z", beta=1e-200) == 0.0


@settings(max_examples=200, deadline=None)
@given(sentences, sentences)
def test_rouge_l_f1_is_symmetric_and_in_the_unit_interval(a, b):
    assert 0.0 <= rouge_l(a, b) <= 1.0
    assert rouge_l(a, b) == pytest.approx(rouge_l(b, a))


# --- keyword and length rewards --------------------------------------------------


def test_keyword_reward_fraction_any_and_case():
    text = "Thank you, that is very polite!"
    keywords = ["polite", "thank you", "sorry"]
    assert keyword_reward(text, keywords) == pytest.approx(2 / 3)
    assert keyword_reward(text, keywords, mode="any") == 1.0
    assert keyword_reward("no match here", keywords, mode="any") == 0.0
    # Case-sensitive: "thank you" does not match "Thank you".
    assert keyword_reward(text, keywords, case_sensitive=True) == pytest.approx(1 / 3)
    assert keyword_reward(text, "POLITE") == 1.0


def test_keyword_reward_matches_whole_tokens():
    assert keyword_reward("that was impolite", ["polite"]) == 0.0
    assert keyword_reward("谢谢你", ["谢谢"], level="word") == 0.0  # one word-level token "谢谢你"
    assert keyword_reward("谢谢你", ["谢谢"], level="char") == 1.0


def test_keyword_reward_rejects_bad_keywords_and_mode():
    with pytest.raises(ValueError, match="at least one keyword"):
        keyword_reward("text", [])
    with pytest.raises(ValueError, match=r"keywords\[1\] must hold a non-space"):
        keyword_reward("text", ["ok", "  "])
    with pytest.raises(TypeError, match="keywords must be a str or a list"):
        keyword_reward("text", {"ok"})
    with pytest.raises(ValueError, match="mode must be one of"):
        keyword_reward("text", ["ok"], mode="all")


def test_length_reward_with_and_without_tolerance():
    # 3 words, target 5: -|3 - 5| / 5.
    assert length_reward("one two three", 5) == pytest.approx(-2 / 5)
    assert length_reward("one two three", 5, tolerance=1) == pytest.approx(-1 / 5)
    assert length_reward("one two three", 5, tolerance=2) == 0.0
    assert length_reward("one two three", 3) == 0.0
    assert length_reward(["a"] * 9, 6) == pytest.approx(-0.5)
    assert length_reward(np.arange(12), 6) == pytest.approx(-1.0)
    assert length_reward("今天天气晴朗", 4, level="char") == pytest.approx(-0.5)


def test_length_reward_rejects_bad_arguments():
    with pytest.raises(ValueError, match="target must be an integer >= 1, got 0"):
        length_reward("a", 0)
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0, got -1"):
        length_reward("a", 3, tolerance=-1)
    with pytest.raises(TypeError, match="tolerance must be a finite number, got str"):
        length_reward("a", 3, tolerance="1")
    with pytest.raises(ValueError, match="tolerance must be a finite number, got nan"):
        length_reward("a", 3, tolerance=float("nan"))
    with pytest.raises(TypeError, match="text_or_tokens must be a str or a list"):
        length_reward(5, 3)


# --- batch reward callables ------------------------------------------------------


def test_reward_callables_return_one_float_per_response():
    prompts = ["Where is the cat?", "Where is the dog?"]
    responses = ["the cat is on the mat", "the dog sat"]
    by_prompt = {"Where is the cat?": CAT_REFERENCE, "Where is the dog?": ["the dog sat"]}

    rewards = RougeReward(by_prompt)(prompts, responses)
    assert rewards.dtype == np.float64 and rewards.shape == (2,)
    np.testing.assert_allclose(rewards, [1.0, 1.0])

    # Shared references: the same list for every prompt.
    rewards = BleuReward([CAT_REFERENCE], max_n=2, smoothing="none")(prompts, responses)
    np.testing.assert_allclose(rewards, [1.0, bleu("the dog sat", CAT_REFERENCE, 2, "none")])

    rewards = KeywordReward(["cat", "mat"])(prompts, responses)
    np.testing.assert_allclose(rewards, [1.0, 0.0])
    rewards = LengthReward(6)(prompts, responses)
    np.testing.assert_allclose(rewards, [0.0, -0.5])


def test_reference_lookup_strips_whitespace_and_reports_a_missing_prompt():
    reward = BleuReward({"  Hi \n": "hello there"})
    np.testing.assert_allclose(reward(["Hi"], ["hello there"]), [1.0])
    with pytest.raises(ValueError, match="no entry for the prompt 'Bye'"):
        reward(["Bye"], ["hello"])


def test_reward_callables_check_their_arguments():
    reward = LengthReward(3)
    with pytest.raises(ValueError, match="same length, got 2 and 1"):
        reward(["a", "b"], ["c"])
    with pytest.raises(TypeError, match=r"responses\[0\] must be a str"):
        reward(["a"], [None])
    with pytest.raises(TypeError, match="prompts must be a list of str"):
        reward("a", ["b"])
    with pytest.raises(ValueError, match="smoothing must be one of"):
        BleuReward("ref", smoothing="bogus")
    with pytest.raises(ValueError, match="level must be one of"):
        RougeReward("ref", level="bytes")
    with pytest.raises(ValueError, match="at least one keyword"):
        KeywordReward([])
    with pytest.raises(ValueError, match="target must be an integer >= 1, got -3"):
        LengthReward(-3)


def test_reward_callables_prepare_once_and_tokenise_only_the_responses():
    prompts, responses = ["p", "p", "q"], ["the cat sat", "Thank you", "the mat"]
    rewards = [
        BleuReward({"p": [CAT_REFERENCE, "a cat"], "q": "the mat"}),
        RougeReward([CAT_REFERENCE, "a cat", "the dog"], level="char"),
        KeywordReward(["thank you", "cat", "mat"]),
        LengthReward(4),
    ]
    for reward in rewards:
        expected = [reward.score(prompt, response) for prompt, response in zip(prompts, responses)]
        tokenised = []
        tokens_of = reward.tokens_of
        reward.tokens_of = lambda text, tokens_of=tokens_of, tokenised=tokenised: (
            tokenised.append(text) or tokens_of(text)
        )
        np.testing.assert_array_equal(reward(prompts, responses), expected)
        assert [text.lower() for text in tokenised] == [text.lower() for text in responses], type(reward).__name__


@settings(max_examples=50, deadline=None)
@given(sentences, st.lists(sentences, min_size=1, max_size=3), st.sampled_from(["word", "char"]))
def test_the_token_level_metrics_are_the_text_metrics_on_tokens(candidate, references, level):
    candidate_tokens = tokenize(candidate, level)
    reference_token_lists = [tokenize(reference, level) for reference in references]
    for max_n, smoothing in [(4, "add1"), (2, "none"), (3, "epsilon")]:
        assert bleu_from_tokens(candidate_tokens, reference_token_lists, max_n, smoothing) == bleu(
            candidate, references, max_n, smoothing, level
        )
    assert rouge_l_from_tokens(candidate_tokens, reference_token_lists, 2.0) == rouge_l(
        candidate, references, 2.0, level
    )


# --- parse_rule_reward -----------------------------------------------------------


def test_parse_bleu_and_rouge_from_a_text_file(tmp_path):
    path = tmp_path / "refs.txt"
    path.write_text("the cat is on the mat\n\nthere is a cat on the mat\n", encoding="utf-8")

    reward = parse_rule_reward(f"rouge:{path}")
    assert isinstance(reward, RougeReward)
    assert reward.shared_references == ["the cat is on the mat", "there is a cat on the mat"]
    np.testing.assert_allclose(reward(["any prompt"], ["there is a cat on the mat"]), [1.0])

    reward = parse_rule_reward(f"bleu:{path}")
    assert isinstance(reward, BleuReward)
    np.testing.assert_allclose(reward(["p"], ["the cat on the mat"]), [bleu(
        "the cat on the mat", ["the cat is on the mat", "there is a cat on the mat"]
    )])


def test_parse_references_per_prompt_from_jsonl(tmp_path):
    path = tmp_path / "refs.jsonl"
    lines = [
        {"prompt": "Greet me.", "reference": "Hello!"},
        {"prompt": "Greet me.", "references": ["Hi there!"]},
        {"prompt": "今天天气怎么样?", "references": ["今天天气很晴朗"]},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), "utf-8")
    reward = parse_rule_reward(f"rouge:{path}")
    assert reward.references_by_prompt["Greet me."] == ["Hello!", "Hi there!"]
    rewards = reward(["Greet me.", "今天天气怎么样?"], ["Hi there!", "今天天气很晴朗"])
    np.testing.assert_allclose(rewards, [1.0, 1.0])


def test_parse_keyword_and_length():
    reward = parse_rule_reward("keyword:polite, thank you")
    assert isinstance(reward, KeywordReward) and reward.keywords == ["polite", "thank you"]
    np.testing.assert_allclose(reward(["p"], ["Thank you!"]), [0.5])

    reward = parse_rule_reward("length:40")
    assert isinstance(reward, LengthReward) and reward.target == 40
    np.testing.assert_allclose(reward(["p"], ["word " * 20]), [-0.5])


def test_parse_arithmetic():
    reward = parse_rule_reward("arithmetic:0.1")
    assert isinstance(reward, ArithmeticReward) and reward.format_reward == 0.1
    np.testing.assert_allclose(reward(["Q: 37+48= A:"] * 3, [" 85", " 75", "85 or 75"]), [1.0, 0.1, 0.0])


@pytest.mark.parametrize("spec", ["arithmetic:1", "arithmetic:-0.5", "arithmetic:nan", "arithmetic:half"])
def test_parse_arithmetic_needs_a_format_reward_below_one(spec):
    with pytest.raises(ValueError, match=r"FORMAT_REWARD must be a number in \[0, 1\); valid forms"):
        parse_rule_reward(spec)


@pytest.mark.parametrize(
    "spec", ["", "bleu", "bleu:", "cider:refs.txt", "keywords:polite", "length 40", ":40"]
)
def test_parse_unknown_spec_lists_the_valid_forms(spec):
    with pytest.raises(ValueError, match=r"valid forms: bleu:PATH, rouge:PATH, keyword:.*length:N"):
        parse_rule_reward(spec)


@pytest.mark.parametrize("spec", ["length:0", "length:-3", "length:4.5", "length:forty"])
def test_parse_length_needs_a_positive_integer(spec):
    with pytest.raises(ValueError, match="N must be a positive integer"):
        parse_rule_reward(spec)


@pytest.mark.parametrize(
    "line, error, message",
    [
        ('{"prompt": "p", "references": []}', ValueError, "line 3: references must hold at least one reference"),
        ('{"prompt": "p", "references": [1]}', TypeError, r"line 3: references\[0\] must be a str, got int"),
    ],
)
def test_bad_references_name_the_file_and_line(tmp_path, line, error, message):
    path = tmp_path / "refs.jsonl"
    path.write_text('{"prompt": "p", "reference": "x"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(error, match=f"^{re.escape(str(path))}, {message}"):
        parse_rule_reward(f"rouge:{path}")


def test_reference_file_that_is_not_utf8_or_is_a_directory(tmp_path):
    latin1 = tmp_path / "refs.txt"
    latin1.write_bytes("café au lait\n".encode("latin-1"))
    with pytest.raises(ValueError, match=f"^reference file {re.escape(str(latin1))}: not UTF-8 text"):
        parse_rule_reward(f"bleu:{latin1}")
    with pytest.raises(IsADirectoryError):  # an OSError, reported as such by the CLI: not "does not exist"
        parse_rule_reward(f"bleu:{tmp_path}")


def test_prompts_differing_only_by_surrounding_whitespace_merge_their_references(tmp_path):
    path = tmp_path / "refs.jsonl"
    path.write_text('{"prompt": "Q: a A:", "reference": "x"}\n{"prompt": "Q: a A: ", "reference": "y"}\n',
                    encoding="utf-8")
    reward = parse_rule_reward(f"rouge:{path}")
    assert reward.references_by_prompt == {"Q: a A:": ["x", "y"]}
    np.testing.assert_array_equal(reward(["Q: a A:", " Q: a A:"], ["x", "y"]), [1.0, 1.0])
    reward = RougeReward({"p": "x", " p\n": ["y", "z"]})
    assert reward.references_by_prompt == {"p": ["x", "y", "z"]}


def test_parse_rejects_bad_keyword_specs_and_reference_files(tmp_path):
    with pytest.raises(ValueError, match="names no keyword"):
        parse_rule_reward("keyword:, ,")
    with pytest.raises(ValueError, match="does not exist"):
        parse_rule_reward(f"bleu:{tmp_path / 'missing.txt'}")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no reference"):
        parse_rule_reward(f"rouge:{empty}")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a", "reference": "b"}\n{"prompt": "c"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2: expected a str 'reference'"):
        parse_rule_reward(f"rouge:{broken}")
    with pytest.raises(TypeError, match="spec must be a str"):
        parse_rule_reward(None)


# --- check_rewards ---------------------------------------------------------------


def test_check_rewards_returns_a_float_array():
    rewards = check_rewards([1, 0.5, -2], ["a", "b", "c"])
    assert rewards.dtype == np.float64
    np.testing.assert_array_equal(rewards, [1.0, 0.5, -2.0])


def test_check_rewards_shows_the_non_finite_samples():
    responses = ["fine answer", "the answer that broke the reward model", "also fine", "inf one"]
    with pytest.raises(ValueError) as error:
        check_rewards(np.array([0.1, np.nan, 0.3, -np.inf]), responses)
    message = str(error.value)
    assert "2 of 4 are not" in message
    assert "index 1: reward nan, response 'the answer that broke the reward model'" in message
    assert "index 3: reward -inf, response 'inf one'" in message
    assert "fine answer" not in message


def test_check_rewards_rejects_a_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\).*got shape \(2, 1\)"):
        check_rewards(np.zeros((2, 1)), ["a", "b"])
    with pytest.raises(ValueError, match="index 1 has no reward, response 'second'"):
        check_rewards([0.0], ["first", "second"])
    with pytest.raises(ValueError, match="index 1 has reward 7.0 but no response"):
        check_rewards([0.0, 7.0], ["first"])
    with pytest.raises(TypeError, match="rewards must be numbers"):
        check_rewards(["high"], ["first"])


@pytest.mark.parametrize(
    "rewards, shown",
    [
        (["1.5", 2.0], "index 0: reward '1.5', response 'first'"),
        ([1.0, None], "index 1: reward None, response 'second'"),
        (np.array([True, False]), "index 0: reward True, response 'first'\n  index 1: reward False"),
        (np.array(["high", "low"]), "index 0: reward 'high', response 'first'"),
        ([True, 1.0], "1 of 2 are not:\n  index 0: reward True, response 'first'"),  # NumPy alone: 1.0
        ((1.0, "a"), "1 of 2 are not:\n  index 1: reward 'a', response 'second'"),  # NumPy alone: '1.0'
    ],
)
def test_check_rewards_requires_real_numbers(rewards, shown):
    with pytest.raises(TypeError) as error:
        check_rewards(rewards, ["first", "second"])
    assert str(error.value).startswith("rewards must be numbers (real, not str, bool or None); ")
    assert shown in str(error.value)


def test_auto_level_counts_chinese_and_japanese_by_character_and_the_rest_by_word():
    assert tokenize("Hi, 我不知道。 5pm ひらがな") == ["Hi", ",", *"我不知道。", "5pm", *"ひらがな"]
    assert tokenize("Hi, it's 5pm!") == tokenize("Hi, it's 5pm!", level="word")


def test_a_chinese_non_answer_no_longer_scores_like_an_answer():
    # At word level each sentence is one token plus "。", so any answer ending in "。" shares half its tokens
    # with the reference: "不知道。" ("don't know") scored like a real answer, and a policy learned to say it.
    reference, answer, non_answer = "天气晴朗。", "今天很晴朗。", "不知道。"
    assert rouge_l(answer, reference, level="word") == rouge_l(non_answer, reference, level="word") == 0.5
    assert rouge_l(non_answer, reference) == pytest.approx(2 / 9)  # LCS "。": P = 1/4, R = 1/5
    assert rouge_l(answer, reference) == pytest.approx(8 / 11)  # LCS "天晴朗。": P = 4/6, R = 4/5
    answer_reward, non_answer_reward = RougeReward(reference)(["Q"] * 2, [answer, non_answer])
    assert answer_reward > 3 * non_answer_reward


def test_a_spec_chooses_the_level_after_a_dot(tmp_path):
    references = tmp_path / "refs.txt"
    references.write_text("天气晴朗。\n", encoding="utf-8")
    responses = ["今天很晴朗。", "不知道。"]
    assert parse_rule_reward(f"rouge:{references}").level == "auto"
    np.testing.assert_allclose(parse_rule_reward(f"rouge.word:{references}")(["Q"] * 2, responses), [0.5, 0.5])
    assert parse_rule_reward(f"bleu.char:{references}").level == "char"
    assert parse_rule_reward("keyword.char:谢谢")(["Q"], ["谢谢你"])[0] == 1.0
    assert parse_rule_reward("length.word:3")(["Q"], ["a b c"])[0] == 0.0
    for spec in (f"rouge.bytes:{references}", "arithmetic.char:0"):
        with pytest.raises(ValueError, match=r"take a level \(auto, word, char\) after a dot"):
            parse_rule_reward(spec)

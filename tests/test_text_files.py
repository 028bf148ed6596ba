"""Tests for minippo.text.files: reading a user's UTF-8 files and JSON Lines of preference pairs."""
import json
import re

import pytest

from minippo.checks import check_choice, check_str
from minippo.rewards import parse_rule_reward
from minippo.text.corpus import load_preferences
from minippo.text.files import (
    jsonl_lines,
    parse_json,
    parse_preference_pairs,
    read_preference_pairs,
    read_text,
)

PAIR = {"prompt": "Where is the bank?", "chosen": "Sure! It is on Main Street.", "rejected": "Not my problem."}


def write_lines(path, lines, prefix=""):
    path.write_text(prefix + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_text_drops_a_byte_order_mark_and_keeps_the_rest(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes("\ufeffQ: 你好 A: hi\r\n\ufeffsecond".encode("utf-8"))
    # Only the leading mark goes: one inside the text is a character like any other.
    assert read_text(path) == "Q: 你好 A: hi\n\ufeffsecond"
    path.write_bytes(b"plain")
    assert read_text(path) == "plain"


def test_preference_pairs_read_back_with_blank_lines_crlf_and_a_byte_order_mark(tmp_path):
    second = {**PAIR, "prompt": "今天天气怎么样?", "source": "kept"}
    path = tmp_path / "pairs.jsonl"
    text = "\ufeff" + json.dumps(PAIR) + "\r\n\r\n  \r\n" + json.dumps(second, ensure_ascii=False) + "\r\n"
    path.write_bytes(text.encode("utf-8"))
    assert read_preference_pairs(path) == [PAIR, second]
    assert read_preference_pairs(str(path)) == [PAIR, second]


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"prompt": "p", "chosen": "a"', r"not valid JSON \(Expecting ',' delimiter at column 30\)"),
        ('["p", "a", "b"]', (r"each line must be an object with string fields 'prompt', 'chosen' and 'rejected', "
                             r"got '\[\"p\", \"a\", \"b\"\]'")),
        ('{"prompt": "p", "rejected": "b"}', r"each line must be .*; 'chosen' is missing$"),
        ('{"prompt": "p", "chosen": "a", "rejected": 3}', r"each line must be .*; 'rejected' is int$"),
        ('{"prompt": null, "chosen": "a", "rejected": "b"}', r"each line must be .*; 'prompt' is NoneType$"),
    ],
)
def test_a_bad_preference_line_is_named_by_file_line_and_problem(tmp_path, line, problem):
    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps(PAIR), "", line])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:3: {problem}"):
        read_preference_pairs(path)


def test_a_preference_file_without_pairs_or_not_utf8_or_missing_is_refused(tmp_path):
    empty = write_lines(tmp_path / "empty.jsonl", ["", "   "], prefix="\ufeff")
    with pytest.raises(ValueError, match=f"^{re.escape(str(empty))}: no preference pairs found$"):
        read_preference_pairs(empty)
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes(json.dumps({**PAIR, "prompt": "café"}, ensure_ascii=False).encode("latin-1"))
    with pytest.raises(ValueError, match=f"^{re.escape(str(latin1))}: not UTF-8 text"):
        read_preference_pairs(latin1)
    with pytest.raises(FileNotFoundError):  # an OSError, which the CLI reports as such
        read_preference_pairs(tmp_path / "missing.jsonl")


def test_the_shipped_pairs_go_through_the_same_reader():
    for split in ("train", "test"):
        pairs = load_preferences(split)
        assert pairs and all(set(pair) == {"prompt", "chosen", "rejected"} for pair in pairs)
    with pytest.raises(ValueError, match=r"^shipped.jsonl:1: each line must be .*'chosen' is missing$"):
        parse_preference_pairs('{"prompt": "p", "rejected": "b"}', "shipped.jsonl")


def test_jsonl_lines_count_every_line_and_strip_each():
    text = '\n  {"a": 1}  \n\n[2]\n'
    lines = list(jsonl_lines(text, lambda number: f"f:{number}"))
    assert lines == [("f:2", '{"a": 1}', {"a": 1}), ("f:4", "[2]", [2])]
    with pytest.raises(ValueError, match=r"^f, line 3: not valid JSON \(Expecting value at column 1\)$"):
        list(jsonl_lines('{}\n\n  nope', lambda number: f"f, line {number}"))


def test_reference_files_with_a_byte_order_mark(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text('\ufeff{"prompt": "p", "reference": "x"}\n', encoding="utf-8")
    assert parse_rule_reward(f"rouge:{refs}").references_by_prompt == {"p": ["x"]}
    plain = tmp_path / "refs.txt"
    plain.write_text("\ufeffthe cat\n", encoding="utf-8")
    assert parse_rule_reward(f"bleu:{plain}").shared_references == ["the cat"]


def test_check_str_and_check_choice_name_the_argument():
    assert check_str("a", "text") == "a"
    with pytest.raises(TypeError, match=r"^text must be a str, got bytes$"):
        check_str(b"a", "text")
    assert check_choice("char", "level", ("word", "char")) == "char"
    with pytest.raises(ValueError, match=r"^level must be one of \('word', 'char'\), got 'byte'$"):
        check_choice("byte", "level", ("word", "char"))
    with pytest.raises(ValueError, match=r"^level must be one of \('word', 'char'\), got \['word'\]$"):
        check_choice(["word"], "level", ("word", "char"))


@pytest.mark.parametrize(
    "change, problem",
    [
        ({"rejected": PAIR["chosen"]}, "'chosen' and 'rejected' are the same text, so the pair prefers nothing"),
        ({"chosen": ""}, "'chosen' is empty; a preference pair needs two responses to compare"),
        ({"rejected": " \t"}, "'rejected' is empty; a preference pair needs two responses to compare"),
    ],
)
def test_a_pair_that_prefers_nothing_is_named_by_file_and_line(tmp_path, change, problem):
    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps(PAIR), json.dumps({**PAIR, **change})])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:2: {re.escape(problem)}$"):
        read_preference_pairs(path)


def test_a_repeated_json_key_is_an_error_naming_it(tmp_path):
    line = '{"prompt": "p", "chosen": "a", "rejected": "b", "chosen": "c"}'
    path = write_lines(tmp_path / "pairs.jsonl", [json.dumps(PAIR), line])
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:2: repeated key 'chosen'$"):
        read_preference_pairs(path)
    with pytest.raises(ValueError, match=r"^spec.json: repeated key 'gamma'$"):
        parse_json('{"gamma": 0.9, "rewards": [1], "gamma": 0.5}', "spec.json")
    with pytest.raises(ValueError, match=r"^spec.json: not valid JSON \(Expecting value at line 2 column 1\)$"):
        parse_json('{"a":\n}', "spec.json")
    assert parse_json('{"a": {"a": 1}}', "x") == {"a": {"a": 1}}  # the same key in two objects is fine

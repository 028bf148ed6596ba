"""Tests for minippo.text.corpus: the generator and the shipped files must agree."""
import importlib.resources
import json

import numpy as np
import pytest

from minippo.text import corpus


@pytest.fixture(scope="module")
def generated():
    return corpus.generate_corpus(seed=0)


def test_shipped_files_equal_the_generator_output(generated):
    data = importlib.resources.files("minippo") / "data"
    for name, content in corpus.corpus_files(generated).items():
        assert (data / name).read_text(encoding="utf-8") == content, (
            f"minippo/data/{name} is out of date: run python -m minippo.text.corpus"
        )


def test_write_corpus_leaves_the_old_files_when_a_write_fails(generated, tmp_path, monkeypatch):
    corpus.write_corpus(generated, tmp_path)
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    files = corpus.corpus_files(generated)
    broken = dict(files, **{name: content[:100] + "\ud800" for name, content in files.items()})  # unencodable
    monkeypatch.setattr(corpus, "corpus_files", lambda _: broken)
    with pytest.raises(UnicodeEncodeError):
        corpus.write_corpus(generated, tmp_path)
    assert {path.name: path.read_bytes() for path in tmp_path.iterdir()} == before  # no partial file, no temporary


def test_write_corpus_writes_the_shipped_files(generated, tmp_path):
    corpus.write_corpus(generated, tmp_path / "data")
    written = sorted(path.name for path in (tmp_path / "data").iterdir())
    assert written == sorted(corpus.corpus_files(generated))


def test_loaders_read_the_shipped_files(generated):
    assert corpus.load_corpus() == generated.dialogues
    for split in corpus.SPLITS:
        assert corpus.load_prompts(split) == generated.prompts[split]
        assert corpus.load_preferences(split) == generated.preferences[split]


def test_same_seed_same_corpus_and_generators_accepted(generated):
    assert corpus.generate_corpus(np.random.default_rng(0)) == generated
    assert corpus.generate_corpus(seed=1).dialogues != generated.dialogues


def test_corpus_size_and_variety(generated):
    assert len(generated.prompts["train"]) == 353
    assert len(generated.prompts["test"]) == 62
    assert len(generated.dialogues) == 353 * 8
    assert len(set(generated.dialogues)) > 2000
    assert len(generated.preferences["train"]) == 353 * 3
    assert len(generated.preferences["test"]) == 62 * 3


def test_examples_are_short_ascii_lines(generated):
    for example in generated.dialogues:
        assert len(example.encode("utf-8")) <= corpus.MAX_EXAMPLE_BYTES
        assert example.isascii() and "\n" not in example
    for split in corpus.SPLITS:
        for pair in generated.preferences[split]:
            for key in ("chosen", "rejected"):
                example = corpus.format_example(pair["prompt"], pair[key])
                assert len(example.encode("utf-8")) <= corpus.MAX_EXAMPLE_BYTES


def test_base_rate_of_preferred_responses(generated):
    preferred = [corpus.is_preferred(corpus.split_example(line)[1]) for line in generated.dialogues]
    rate = np.mean(preferred)
    assert 0.2 <= rate <= 0.35
    assert round(rate, 3) == 0.253


def test_preference_files_hold_valid_pairs():
    data = importlib.resources.files("minippo") / "data"
    for split in corpus.SPLITS:
        prompts = set(corpus.load_prompts(split))
        lines = (data / f"preferences_{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines
        for line in lines:
            pair = json.loads(line)
            assert list(pair) == ["prompt", "chosen", "rejected"]
            assert pair["prompt"] in prompts
            assert pair["chosen"] != pair["rejected"]
            assert corpus.is_preferred(pair["chosen"])
            assert not corpus.is_preferred(pair["rejected"])


def test_held_out_prompts_are_unseen(generated):
    train, test = set(generated.prompts["train"]), set(generated.prompts["test"])
    assert not train & test
    assert len(train) == len(generated.prompts["train"])  # no duplicate prompts
    dialogue_prompts = {corpus.split_example(line)[0] for line in generated.dialogues}
    assert dialogue_prompts == train


def test_format_and_split_examples():
    assert corpus.format_prompt("Where is the bank?") == "Q: Where is the bank? A:"
    example = corpus.format_example("Where is the bank?", "Sure! It is on Main Street.")
    assert example == "Q: Where is the bank? A: Sure! It is on Main Street."
    assert corpus.split_example(example) == ("Where is the bank?", "Sure! It is on Main Street.")
    with pytest.raises(ValueError, match="example must look like"):
        corpus.split_example("Where is the bank? Sure!")
    with pytest.raises(TypeError, match="prompt must be a str"):
        corpus.format_prompt(3)


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("Sure! It is Paris.", True),
        ("It is Paris. Hope that helps!", True),
        ("It is Paris.", False),
        ("Ugh. It is Paris.", False),
        ("Sure! It is Paris. Now go away.", False),
        ("Not my problem.", False),
    ],
)
def test_is_preferred(response, expected):
    assert corpus.is_preferred(response) is expected


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.load_prompts("validation")
    with pytest.raises(ValueError, match="split must be one of"):
        corpus.load_preferences("dev")
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1"):
        corpus.generate_corpus(test_fraction=1.5)
    with pytest.raises(TypeError, match="preferred_fraction must be a finite number, got str"):
        corpus.generate_corpus(preferred_fraction="0.5")
    with pytest.raises(ValueError, match="responses_per_prompt must be an integer >= 1, got 0"):
        corpus.generate_corpus(responses_per_prompt=0)

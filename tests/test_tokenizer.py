"""Tests for minippo.text.tokenizer (ByteTokenizer) and minippo.text.bpe (BPETokenizer)."""
import json
import os
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minippo.text import BPETokenizer, ByteTokenizer
from minippo.text.corpus import load_corpus
from minippo.text.pretokenize import pretokenize

CHINESE = "今天的天气怎么样?"
MIXED_TEXT = "Hi, 世界! 今天的天气怎么样? Café ☕ 🎉 tab\there\n\nnew  line_2024."


@pytest.fixture(scope="module")
def corpus_text():
    return "\n".join(load_corpus())


@pytest.fixture(scope="module")
def bpe(corpus_text):
    return BPETokenizer.train(corpus_text, vocab_size=512)


# --- ByteTokenizer ---------------------------------------------------------------


def test_byte_tokenizer_special_tokens_follow_the_bytes():
    tokenizer = ByteTokenizer()
    assert (tokenizer.pad_id, tokenizer.eos_id, tokenizer.vocab_size) == (256, 257, 258)


def test_chinese_encodes_to_its_utf8_bytes_and_round_trips():
    tokenizer = ByteTokenizer()
    assert tokenizer.encode("今天", add_eos=True) == [228, 187, 138, 229, 164, 169, 257]
    ids = tokenizer.encode(CHINESE)
    assert len(ids) == 8 * 3 + 1
    assert tokenizer.decode(ids) == CHINESE


@given(st.text())
def test_byte_tokenizer_round_trips_any_string(text):
    tokenizer = ByteTokenizer()
    assert tokenizer.decode(tokenizer.encode(text, add_eos=True)) == text


def test_decode_replaces_a_truncated_character_instead_of_failing():
    tokenizer = ByteTokenizer()
    # "今" is e4 bb 8a; a model that stops after two of its bytes produces invalid UTF-8.
    assert tokenizer.decode([65, 228, 187]) == "A\ufffd"
    assert tokenizer.decode([228, 187, 66]) == "\ufffdB"


def test_decode_skips_or_shows_special_tokens():
    tokenizer = ByteTokenizer()
    ids = [256, 72, 105, 257]
    assert tokenizer.decode(ids) == "Hi"
    assert tokenizer.decode(ids, skip_special=False) == "<pad>Hi<eos>"


def test_special_token_names_in_text_are_plain_bytes():
    tokenizer = ByteTokenizer()
    assert tokenizer.encode("<eos>") == list(b"<eos>")


def test_decode_accepts_integer_arrays():
    tokenizer = ByteTokenizer()
    assert tokenizer.decode(np.array([72, 105], dtype=np.int64)) == "Hi"
    assert tokenizer.decode(np.array([72, 105], dtype=np.uint8)) == "Hi"


def test_encode_rejects_non_strings():
    tokenizer = ByteTokenizer()
    with pytest.raises(TypeError, match="text must be a str, got bytes"):
        tokenizer.encode(b"hi")
    with pytest.raises(TypeError, match="text must be a str, got NoneType"):
        tokenizer.encode(None)


def test_encode_rejects_lone_surrogates():
    with pytest.raises(ValueError, match="U\\+D800"):
        ByteTokenizer().encode("a\ud800")


def test_decode_rejects_ids_outside_the_vocabulary():
    tokenizer = ByteTokenizer()
    with pytest.raises(ValueError, match="id 258, outside the vocabulary 0..257"):
        tokenizer.decode([72, 258])
    with pytest.raises(ValueError, match="id -1"):
        tokenizer.decode([-1])


def test_decode_rejects_non_integer_ids():
    tokenizer = ByteTokenizer()
    with pytest.raises(TypeError, match="must hold ints"):
        tokenizer.decode([72.0])
    with pytest.raises(TypeError, match="must hold ints"):
        tokenizer.decode([True])
    with pytest.raises(TypeError, match="sequence of ints"):
        tokenizer.decode("Hi")
    with pytest.raises(TypeError, match="1-D integer array"):
        tokenizer.decode(np.zeros((2, 2), dtype=np.int64))


def test_encode_batch_pads_on_the_left():
    tokenizer = ByteTokenizer()
    ids, mask = tokenizer.encode_batch(["Hi", "abc", ""])
    np.testing.assert_array_equal(ids, [[256, 72, 105], [97, 98, 99], [256, 256, 256]])
    np.testing.assert_array_equal(mask, [[0, 1, 1], [1, 1, 1], [0, 0, 0]])
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    # With left padding every row's last real token is in the last column, and
    # the positions cumsum(mask) - 1 count from 0 at each row's first real token.
    np.testing.assert_array_equal((np.cumsum(mask, axis=1) - 1)[0, 1:], [0, 1])
    assert [tokenizer.decode(row) for row in ids] == ["Hi", "abc", ""]


def test_encode_batch_pads_on_the_right_and_adds_eos():
    tokenizer = ByteTokenizer()
    ids, mask = tokenizer.encode_batch(["Hi", "a"], add_eos=True, pad_left=False)
    np.testing.assert_array_equal(ids, [[72, 105, 257], [97, 257, 256]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0]])


def test_pad_batch_stacks_id_sequences():
    tokenizer = ByteTokenizer()
    ids, mask = tokenizer.pad_batch([[1, 2, 3], np.array([4])])
    np.testing.assert_array_equal(ids, [[1, 2, 3], [256, 256, 4]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [0, 0, 1]])
    ids, mask = tokenizer.pad_batch([])
    assert ids.shape == mask.shape == (0, 0)


def test_batch_helpers_reject_bad_input():
    tokenizer = ByteTokenizer()
    with pytest.raises(TypeError, match="texts must be a list of str, got str"):
        tokenizer.encode_batch("Hi")
    with pytest.raises(TypeError, match="text must be a str, got int"):
        tokenizer.encode_batch(["Hi", 3])
    with pytest.raises(ValueError, match=r"sequences\[1\] holds id 999"):
        tokenizer.pad_batch([[1], [999]])


# --- BPETokenizer ----------------------------------------------------------------


def test_chunks_join_back_to_the_text():
    assert pretokenize("Hi, you  there!\n今天 12ab_c") == [
        "Hi", ",", " you", " ", " there", "!", "\n", "今天", " 12", "ab", "_", "c",
    ]


@given(st.text())
def test_chunks_always_join_back_to_the_text(text):
    assert "".join(pretokenize(text)) == text


def test_training_merges_the_most_frequent_pairs_first():
    # Chunks "ab", " ab", " ab": (a, b) occurs 3 times, then (" ", "ab") twice,
    # then no pair occurs twice, so training stops early at 2 merges.
    tokenizer = BPETokenizer.train("ab ab ab", vocab_size=1000)
    assert tokenizer.merges == ((97, 98), (32, 256))
    assert tokenizer.vocab_size == 256 + 2 + 2
    assert tokenizer.encode("ab ab", add_eos=True) == [256, 257, 259]


def test_training_keeps_contractions_together_as_gpt2_does():
    # Pre-tokens "it", "'s", " it", "'s", " it", "'s": ("'", "s") and ("i", "t") occur 3 times each,
    # and ("'", "s") = (39, 115) has the smaller ids.
    tokenizer = BPETokenizer.train("it's it's it's", vocab_size=1000)
    assert tokenizer.merges[0] == (39, 115)
    assert tokenizer.decode(tokenizer.encode("it's")) == "it's"


def test_training_breaks_ties_by_smallest_ids():
    # (a, b), (c, d) and (" ", c) all occur twice; (" ", c) = (32, 99) has the smallest ids.
    tokenizer = BPETokenizer.train("ab ab cd cd", vocab_size=259)
    assert tokenizer.merges == ((32, 99),)


def test_training_is_deterministic(corpus_text, bpe):
    again = BPETokenizer.train(corpus_text, vocab_size=512)
    assert again.merges == bpe.merges


def test_bpe_compresses_the_corpus(corpus_text, bpe):
    assert bpe.vocab_size == 512
    assert (bpe.pad_id, bpe.eos_id) == (510, 511)
    n_bytes = len(corpus_text.encode("utf-8"))
    n_tokens = len(bpe.encode(corpus_text))
    assert n_tokens < 0.5 * n_bytes
    assert len(bpe.encode(" What")) == 1
    assert bpe.decode(bpe.encode(corpus_text)) == corpus_text


def test_bpe_learns_and_round_trips_chinese(bpe):
    assert bpe.decode(bpe.encode(CHINESE)) == CHINESE  # no Chinese in the corpus: bytes
    chinese_bpe = BPETokenizer.train(" ".join([CHINESE] * 3), vocab_size=300)
    ids = chinese_bpe.encode(CHINESE)
    assert len(ids) < 5  # the repeated sentence became a few long tokens
    assert chinese_bpe.decode(ids) == CHINESE


@settings(max_examples=200)
@given(st.text())
def test_bpe_round_trips_any_string(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trips_mixed_scripts_and_emoji(bpe):
    assert bpe.decode(bpe.encode(MIXED_TEXT)) == MIXED_TEXT
    assert bpe.encode("") == []


def test_bpe_special_tokens_are_not_produced_by_text(bpe):
    ids = bpe.encode("<pad><eos>")
    assert bpe.pad_id not in ids and bpe.eos_id not in ids
    assert bpe.decode([bpe.eos_id]) == ""
    with pytest.raises(ValueError, match="id 512"):
        bpe.decode([512])


def test_bpe_batch_helpers_are_shared(bpe):
    ids, mask = bpe.encode_batch(["Hi", CHINESE])
    assert ids.shape == mask.shape and ids[0, 0] == bpe.pad_id
    assert [bpe.decode(row) for row in ids] == ["Hi", CHINESE]


def test_train_rejects_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size must be at least 258"):
        BPETokenizer.train("abc", vocab_size=257)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("abc", vocab_size=300.0)
    with pytest.raises(TypeError, match="text must be a str"):
        BPETokenizer.train(["abc"], vocab_size=300)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        BPETokenizer.train("abc", vocab_size=True)


def test_numpy_integers_are_accepted_and_stored_as_ints(tmp_path):
    trained = BPETokenizer.train("ab ab ab abc abc", vocab_size=np.int64(260))
    assert trained == BPETokenizer.train("ab ab ab abc abc", vocab_size=260)
    assert trained.vocab_size == 260
    tokenizer = BPETokenizer([(np.int64(97), 98), (np.int32(256), np.uint8(99))])
    assert tokenizer.merges == ((97, 98), (256, 99))
    assert all(type(token_id) is int for pair in tokenizer.merges for token_id in pair)
    assert tokenizer.encode("abc") == [257]
    tokenizer.save(tmp_path / "bpe.json")  # plain ints, so valid JSON
    assert BPETokenizer.load(tmp_path / "bpe.json") == tokenizer


def test_merges_must_refer_to_existing_tokens():
    with pytest.raises(ValueError, match=r"merges\[0\] refers to token 256"):
        BPETokenizer([(0, 256)])
    with pytest.raises(ValueError, match=r"merges\[1\] repeats merges\[0\]"):
        BPETokenizer([(1, 2), (1, 2)])
    with pytest.raises(TypeError, match=r"merges\[0\] must be a pair"):
        BPETokenizer([(1,)])
    with pytest.raises(TypeError, match=r"merges\[0\] must hold ints, got True"):
        BPETokenizer([(True, 1)])
    with pytest.raises(TypeError, match="merges must be a list of .* got NoneType"):
        BPETokenizer(None)


def test_bpe_tokenizer_pickles(bpe):
    copy = pickle.loads(pickle.dumps(bpe))
    assert copy == bpe and copy is not bpe
    assert copy.encode(MIXED_TEXT) == bpe.encode(MIXED_TEXT)
    assert copy.decode(copy.encode(MIXED_TEXT)) == MIXED_TEXT


def test_save_and_load_round_trip(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded == bpe
    assert loaded.encode(MIXED_TEXT) == bpe.encode(MIXED_TEXT)
    assert os.listdir(tmp_path) == ["bpe.json"]  # no temporary file left behind
    bpe.save(path)  # overwriting works too
    assert BPETokenizer.load(path) == bpe


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"format": "other", "version": 1, "special_tokens": ["<pad>", "<eos>"], "merges": []}', "'format'"),
        ('{"format": "minippo-bpe", "version": 2, "special_tokens": ["<pad>", "<eos>"], "merges": []}', "'version'"),
        ('{"format": "minippo-bpe", "version": true, "special_tokens": ["<pad>", "<eos>"], "merges": []}',
         "'version' must be 1, got True"),
        ('{"format": "minippo-bpe", "version": 1.0, "special_tokens": ["<pad>", "<eos>"], "merges": []}',
         "'version' must be 1, got 1.0"),
        ('{"format": "minippo-bpe", "version": 1, "special_tokens": ["<eos>"], "merges": []}', "'special_tokens'"),
        ('{"format": "minippo-bpe", "version": 1, "special_tokens": ["<pad>", "<eos>"]}', "'merges'"),
        ('{"format": "minippo-bpe", "version": 1, "special_tokens": ["<pad>", "<eos>"], "merges": [[1, 300]]}',
         "refers to token 300"),
        ('{"format": "minippo-bpe", "version": 1, "special_tokens": ["<pad>", "<eos>"], "merges": [["a", 1]]}',
         "must hold ints"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, content, problem):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json is not a BPE tokenizer file") as error:
        BPETokenizer.load(path)
    assert problem in str(error.value)


def test_load_rejects_deeply_nested_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("[" * 100000 + "]" * 100000, encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json is not a BPE tokenizer file: invalid JSON"):
        BPETokenizer.load(path)


def test_load_rejects_binary_files(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError, match="invalid JSON"):
        BPETokenizer.load(path)


def test_saved_file_is_readable_json(bpe, tmp_path):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["format"] == "minippo-bpe"
    assert payload["merges"][:2] == [list(pair) for pair in bpe.merges[:2]]
    assert len(payload["merges"]) == 512 - 258

"""Tokenizers with Hugging Face model directories: written beside the model in GPT-2's format, read back
by minippo and by transformers with the same ids, recorded in minippo checkpoints; and reward models
whose padding token is their EOS (GPT-2's case) scoring alike in minippo and transformers."""
import functools
import json
import pathlib

import numpy as np
import pytest

from minippo.commands.models import checkpoint_tokenizer, load_policy_and_tokenizer
from minippo.hf import directory_tokenizer
from minippo.nn import GPT, GPTConfig
from minippo.nn.checkpoint import save_checkpoint
from minippo.rewards.reward_model import RewardModel
from minippo.text import BPETokenizer, ByteTokenizer, GPT2Tokenizer
from minippo.text.corpus import load_corpus
from minippo.text.gpt2 import tokenizer_from_record, tokenizer_record

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
GPT2_TOKENIZER = FIXTURES / "gpt2-tokenizer" / "vocab-merges"  # 800 tokens, <|endoftext|> is EOS and padding
TEXTS = ["Q: Where is the bank? A: Over there.", "今天的天气怎么样? it's ½ 😀", "  code(x) = 3.14\n\tend"]
PROMPTS = ["Q: hi A:", "Q: where is it? A:", "Q: 今天 A:"]
RESPONSES = [" hello", " No.", " 好"]


TOKENIZERS = ("byte", "bpe", "gpt2")  # the three kinds of tokenizer minippo has


@functools.cache
def make_tokenizer(name):
    if name == "byte":
        return ByteTokenizer()
    if name == "bpe":
        return BPETokenizer.train("\n".join(load_corpus()[:300]), vocab_size=300)
    return GPT2Tokenizer.from_pretrained(GPT2_TOKENIZER)


def random_model(vocab_size, seed=0, dtype=np.float32):
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16, dtype=dtype),
                seed=seed)
    rng = np.random.default_rng(seed + 1)
    for name in sorted(model.params):  # off their initial values, so a misplaced parameter shows
        model.params[name] += (0.1 * rng.standard_normal(model.params[name].shape)).astype(dtype)
    return model


def random_reward_model(tokenizer, dtype=np.float32):
    model = RewardModel(random_model(tokenizer.vocab_size, seed=3, dtype=dtype), tokenizer)
    model.head.params["weight"][...] = np.random.default_rng(4).standard_normal((16, 1))
    model.gain, model.bias = 2.0, -1.0
    return model


# -- NumPy alone ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", TOKENIZERS)
def test_a_saved_model_directory_brings_its_tokenizer(tmp_path, name):
    tokenizer = make_tokenizer(name)
    random_model(tokenizer.vocab_size).save_pretrained(tmp_path, tokenizer=tokenizer)
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["eos_token_id"], config["pad_token_id"]) == (tokenizer.eos_id, tokenizer.pad_id)
    read = directory_tokenizer(tmp_path)
    assert type(read) is (ByteTokenizer if name == "byte" else GPT2Tokenizer)
    assert (read.vocab_size, read.eos_id, read.pad_id) == (tokenizer.vocab_size, tokenizer.eos_id, tokenizer.pad_id)
    for text in TEXTS:
        assert read.encode(text, add_eos=True) == tokenizer.encode(text, add_eos=True)
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges[0] == "#version: 0.2" and len(merges) == 1 + len(tokenizer.merges)  # bytes: no merges


@pytest.mark.parametrize("name", TOKENIZERS)
def test_checkpoints_record_the_tokenizer_they_were_trained_with(tmp_path, name):
    tokenizer = make_tokenizer(name)
    record = json.loads(json.dumps(tokenizer_record(tokenizer)))  # JSON-friendly
    assert (record == "byte") == (name == "byte")
    for text in TEXTS:
        assert tokenizer_from_record(record, "test").encode(text, add_eos=True) == tokenizer.encode(text, add_eos=True)
    policy = random_model(tokenizer.vocab_size)
    save_checkpoint(tmp_path / "policy.npz", policy.params, policy.config.to_dict(),
                    extra={"tokenizer": record}, kind="gpt")
    loaded, loaded_tokenizer = load_policy_and_tokenizer(str(tmp_path / "policy.npz"))
    assert loaded_tokenizer.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])
    np.testing.assert_array_equal(loaded.forward(np.array([[1, 2, 3]])), policy.forward(np.array([[1, 2, 3]])))
    reward = random_reward_model(tokenizer)
    reward.save(tmp_path / "rm.npz")
    np.testing.assert_array_equal(RewardModel.load(tmp_path / "rm.npz")(PROMPTS, RESPONSES), reward(PROMPTS, RESPONSES))


def test_checkpoint_tokenizer_errors_and_default(tmp_path):
    policy = random_model(258)
    save_checkpoint(tmp_path / "old.npz", policy.params, policy.config.to_dict(), kind="gpt")
    assert isinstance(checkpoint_tokenizer(tmp_path / "old.npz"), ByteTokenizer)  # recorded none: bytes
    with pytest.raises(ValueError, match="the recorded tokenizer must be 'byte' or an object with the keys"):
        tokenizer_from_record("bpe", "somewhere")
    broken = dict(tokenizer_record(make_tokenizer("gpt2")), merges=[["Ġ", "nonsense"]])
    with pytest.raises(ValueError, match="somewhere: the recorded tokenizer is not valid: merge 0"):
        tokenizer_from_record(broken, "somewhere")
    small = random_model(300)  # fewer ids than the GPT-2 tokenizer's 800
    save_checkpoint(tmp_path / "small.npz", small.params, small.config.to_dict(),
                    extra={"tokenizer": tokenizer_record(make_tokenizer("gpt2"))}, kind="gpt")
    with pytest.raises(ValueError, match="the tokenizer has 800 tokens, more than the model's vocabulary of 300"):
        load_policy_and_tokenizer(str(tmp_path / "small.npz"))


def test_a_reward_model_whose_eos_is_padding_reads_the_last_response_token():
    tokenizer = make_tokenizer("gpt2")
    assert tokenizer.eos_id == tokenizer.pad_id
    model = random_reward_model(tokenizer, np.float64)
    ids, mask = model.encode(PROMPTS, RESPONSES)
    assert tokenizer.eos_id not in ids[mask.astype(bool)]  # no EOS, which the reader would skip
    for row, (prompt, response) in enumerate(zip(PROMPTS, RESPONSES)):
        assert ids[row][mask[row].astype(bool)].tolist() == tokenizer.encode(prompt + response)
    # byte tokenizers keep their EOS, which differs from padding: the score is read there
    byte_model = random_reward_model(ByteTokenizer())
    ids, mask = byte_model.encode(PROMPTS, RESPONSES)
    assert (ids[:, -1] == ByteTokenizer().eos_id).all()


# -- against transformers --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformers():
    pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def hf_ids(hf_tokenizer, texts):
    """Right-padded ids and mask of ``texts`` by a Hugging Face tokenizer, as numpy arrays."""
    batch = hf_tokenizer(texts, padding=True, return_tensors="np")
    return batch["input_ids"].astype(np.int64), batch["attention_mask"].astype(np.int64)


@pytest.mark.parametrize("name", TOKENIZERS)
def test_transformers_reads_an_exported_directory_with_minippo_ids_and_logits(transformers, tmp_path, name):
    import torch

    tokenizer = make_tokenizer(name)
    model = random_model(tokenizer.vocab_size, dtype=np.float64)
    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    for hf_tokenizer in (transformers.AutoTokenizer.from_pretrained(tmp_path),
                         transformers.GPT2TokenizerFast.from_pretrained(tmp_path)):
        assert (len(hf_tokenizer), hf_tokenizer.eos_token_id, hf_tokenizer.pad_token_id) == \
            (tokenizer.vocab_size, tokenizer.eos_id, tokenizer.pad_id)
        assert [hf_tokenizer(text)["input_ids"] for text in TEXTS] == [tokenizer.encode(text) for text in TEXTS]
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    ids = np.array([tokenizer.encode(TEXTS[0])[:20]])
    with torch.no_grad():
        expected = reference(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(model.forward(ids), expected, rtol=0, atol=1e-10)


def test_reward_model_with_eos_as_padding_scores_alike_both_ways(transformers, tmp_path):
    import torch

    tokenizer = make_tokenizer("gpt2")
    model = random_reward_model(tokenizer, np.float64)
    model.save_pretrained(tmp_path / "ours")
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["pad_token_id"] == config["eos_token_id"] == tokenizer.eos_id
    reference = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "ours")
    texts = [prompt + response for prompt, response in zip(PROMPTS, RESPONSES)]

    def hf_scores(texts):
        ids, mask = hf_ids(hf_tokenizer, texts)  # right-padded: transformers' default positions
        with torch.no_grad():
            return reference(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits[:, 0].numpy()

    normalization = config["reward_normalization"]
    ours = model(PROMPTS, RESPONSES)
    for hf_texts in (texts, [text + hf_tokenizer.eos_token for text in texts]):  # transformers skips an EOS
        np.testing.assert_allclose(normalization["gain"] * hf_scores(hf_texts) + normalization["bias"], ours,
                                   rtol=0, atol=1e-10)
    # and a reward model transformers wrote, read by minippo with the directory's tokenizer
    reference.save_pretrained(tmp_path / "theirs")
    hf_tokenizer.save_pretrained(tmp_path / "theirs")  # tokenizer.json: the same tokenizer, in another file
    theirs = RewardModel.from_pretrained(tmp_path / "theirs", np.float64)
    assert theirs.tokenizer.encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])
    np.testing.assert_allclose(theirs(PROMPTS, RESPONSES), ours, rtol=0, atol=1e-10)

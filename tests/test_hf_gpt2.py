"""Hugging Face GPT-2 directories in and out: the policy, the reward model and a value head.

The tests marked by ``transformers`` compare with the reference library (installed in CI); the
others run with NumPy alone, on the fixture ``tests/fixtures/gpt2_tiny`` -- written by minippo's own
``save_pretrained`` from :func:`fixture_model` (regenerate it with
``python -c "from tests.test_hf_gpt2 import write_fixture; write_fixture('tests/fixtures/gpt2_tiny')"``)
and checked against transformers in :func:`test_fixture_gives_the_logits_of_transformers`.
"""
import json
import pathlib
import sys

import numpy as np
import pytest

from minippo.hf import directory_tokenizer, load_value_head, save_value_head
from minippo.hf.safetensors import load_safetensors, save_safetensors
from minippo.nn import GPT, GPTConfig, ValueHead
from minippo.rewards.reward_model import RewardModel
from minippo.text.tokenizer import ByteTokenizer

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "gpt2_tiny"
VOCAB, BLOCK = 258, 32  # ByteTokenizer's vocabulary: 256 bytes, <pad> 256, <eos> 257
PAD, EOS = 256, 257
TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}


def perturbed(params, seed, scale=0.1):
    """Move every parameter off its initial value (biases off 0, gains off 1) so a misplaced one shows."""
    rng = np.random.default_rng(seed)
    for name in sorted(params):
        params[name] += (scale * rng.standard_normal(params[name].shape)).astype(params[name].dtype)


def fixture_model():
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=16, n_layer=1, n_head=2, n_embd=8), seed=0)
    perturbed(model.params, seed=1)
    return model


def write_fixture(directory):
    fixture_model().save_pretrained(directory, tokenizer=ByteTokenizer())


def minippo_model(dtype=np.float32, seed=0):
    model = GPT(GPTConfig(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32, dtype=dtype), seed=seed)
    perturbed(model.params, seed + 1)
    return model


def token_batch(seed=0, B=3, T=9):
    return np.random.default_rng(seed).integers(0, 256, (B, T))


# -- NumPy alone -------------------------------------------------------------------------------------
def test_fixture_is_what_save_pretrained_writes(tmp_path):
    write_fixture(tmp_path)
    for name in ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (tmp_path / name).read_bytes() == (FIXTURE / name).read_bytes(), name


def test_fixture_loads_memory_mapped_with_its_tokenizer():
    expected = fixture_model()
    model = GPT.from_pretrained(FIXTURE)
    assert model.config == expected.config
    for name, value in expected.params.items():
        np.testing.assert_array_equal(model.params[name], value)
    assert isinstance(directory_tokenizer(FIXTURE), ByteTokenizer)
    before = (FIXTURE / "model.safetensors").read_bytes()
    model.params["transformer.wte.weight"] += 1.0  # copy-on-write: the file stays as it was
    assert (FIXTURE / "model.safetensors").read_bytes() == before
    model64 = GPT.from_pretrained(FIXTURE, dtype=np.float64, mmap_file=False)
    assert all(value.dtype == np.float64 for value in model64.params.values())
    ids = token_batch(T=5)
    np.testing.assert_allclose(model64.forward(ids), expected.forward(ids), atol=1e-5)


def copy_fixture(tmp_path, config_changes=None, tensors=None):
    """The fixture in ``tmp_path`` with ``config.json`` fields changed and/or other tensors."""
    config = json.loads((FIXTURE / "config.json").read_text())
    config.update(config_changes or {})
    (tmp_path / "config.json").write_text(json.dumps(config))
    if tensors is None:
        tensors = {name: np.array(value) for name, value in load_safetensors(FIXTURE / "model.safetensors").items()}
    save_safetensors(tmp_path / "model.safetensors", tensors)
    return tmp_path


REFUSED_CONFIGS = [
    ({"model_type": "llama"}, 'model_type = "llama": minippo reads GPT-2 models'),
    ({"activation_function": "relu"}, 'activation_function = "relu": minippo\'s MLP uses GPT-2\'s tanh GELU'),
    ({"layer_norm_epsilon": 1e-6}, "layer_norm_epsilon = 1e-06: minippo's LayerNorm uses ε = 1e-05"),
    ({"n_inner": 64}, "n_inner = 64: minippo's MLP is 4 · n_embd = 32 wide"),
    ({"tie_word_embeddings": False}, "tie_word_embeddings = false: minippo's LM head is tied"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx = true"),
    ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn = true"),
    ({"scale_attn_weights": False}, "scale_attn_weights = false"),
    ({"add_cross_attention": True}, "add_cross_attention = true"),
    ({"n_head": 0}, "n_head = 0: must be an integer >= 1"),
    ({"n_embd": "8"}, 'n_embd = "8": must be an integer >= 1'),
]


@pytest.mark.parametrize("changes, message", REFUSED_CONFIGS, ids=[next(iter(c)) for c, _ in REFUSED_CONFIGS])
def test_config_minippo_cannot_honour_is_refused_naming_field_and_value(tmp_path, changes, message):
    copy_fixture(tmp_path, changes)
    with pytest.raises(ValueError, match="config.json: " + message.replace("(", r"\(")) as error:
        GPT.from_pretrained(tmp_path)
    assert str(tmp_path) in str(error.value)


def test_config_errors(tmp_path):
    config = json.loads((FIXTURE / "config.json").read_text())
    del config["n_positions"]
    copy_fixture(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="config.json: the field n_positions is missing"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ValueError, match="config.json: not valid JSON"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        GPT.from_pretrained(tmp_path)


def test_missing_extra_misshaped_and_untied_tensors_are_named(tmp_path):
    tensors = load_safetensors(FIXTURE / "model.safetensors", mmap_file=False)
    weights = str(tmp_path / "model.safetensors")
    cases = [
        ({k: v for k, v in tensors.items() if k != "transformer.ln_f.bias"},
         "tensor 'transformer.ln_f.bias' is missing"),
        ({**tensors, "v_head.summary.bias": np.zeros(1, np.float32)},
         "tensor 'v_head.summary.bias' is not part of the model"),
        ({**tensors, "transformer.wpe.weight": np.zeros((8, 8), np.float32)},
         r"tensor 'transformer.wpe.weight' has shape \(8, 8\), the config needs \(16, 8\)"),
        ({**tensors, "lm_head.weight": tensors["transformer.wte.weight"] + 1},
         "tensor 'lm_head.weight' differs from 'transformer.wte.weight'"),
        ({**tensors, "transformer.ln_f.bias": np.full(8, np.nan, np.float32)},
         "tensor 'transformer.ln_f.bias' holds NaN"),
    ]
    for changed, message in cases:
        copy_fixture(tmp_path, tensors=changed)
        with pytest.raises(ValueError, match=message) as error:
            GPT.from_pretrained(tmp_path)
        assert str(error.value).startswith(weights)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no weights found .looked for model.safetensors"):
        GPT.from_pretrained(tmp_path)


def test_gpt2model_names_and_tied_lm_head_and_buffers_load(tmp_path):
    tensors = load_safetensors(FIXTURE / "model.safetensors", mmap_file=False)
    bare = {name.removeprefix("transformer."): value for name, value in tensors.items()}
    bare["lm_head.weight"] = tensors["transformer.wte.weight"]
    bare["h.0.attn.bias"] = np.ones((1, 1, 16, 16), np.float32)  # the causal mask some checkpoints carry
    model = GPT.from_pretrained(copy_fixture(tmp_path, tensors=bare))
    for name, value in tensors.items():
        np.testing.assert_array_equal(model.params[name], value)


def test_pytorch_bin_without_torch_names_the_safetensors_alternative(tmp_path, monkeypatch):
    copy_fixture(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch .pip install torch.; without it, convert the model "
                                          "to model.safetensors"):
        GPT.from_pretrained(tmp_path)


def reward_model(dtype=np.float32):
    model = RewardModel(minippo_model(dtype, seed=4), ByteTokenizer(), seed=0)
    rng = np.random.default_rng(5)
    model.head.params["weight"][...] = rng.standard_normal(model.head.params["weight"].shape)
    model.head.params["bias"][...] = 0.3
    model.gain, model.bias = 2.0, -1.0
    return model


PROMPTS = ["Q: hi A:", "Q: where is the station? A:", "Q: 今天 A:"]
RESPONSES = [" hello", " No.", " 好"]


def test_reward_model_directory_round_trip_gives_the_same_rewards(tmp_path):
    model = reward_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["GPT2ForSequenceClassification"] and config["pad_token_id"] == PAD
    assert config["reward_normalization"] == {"gain": 2.0, "bias": 2.0 * np.float32(0.3) - 1.0}
    loaded = RewardModel.from_pretrained(tmp_path)
    assert isinstance(loaded.tokenizer, ByteTokenizer) and float(loaded.head.params["bias"][0]) == 0.0
    np.testing.assert_allclose(loaded(PROMPTS, RESPONSES), model(PROMPTS, RESPONSES), rtol=1e-6, atol=1e-6)


def test_value_head_round_trip(tmp_path):
    head = ValueHead(8, np.float64, init_std=1.0, seed=0)
    head.params["bias"][...] = 0.5
    save_value_head(head, tmp_path)
    assert load_safetensors(tmp_path / "value_head.safetensors")["v_head.summary.weight"].shape == (1, 8)
    loaded = load_value_head(tmp_path, np.float64)
    for name, value in head.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)


# -- against transformers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def transformers():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    return transformers


def torch_dtype(dtype):
    import torch

    return {np.float32: torch.float32, np.float64: torch.float64}[dtype]


def hf_logits(model, ids, attention_mask=None):
    import torch

    with torch.no_grad():
        mask = None if attention_mask is None else torch.tensor(attention_mask)
        return model(torch.tensor(ids), attention_mask=mask).logits.numpy()


def hf_model(transformers, cls, dtype=np.float32, seed=0, **config):
    """A random Hugging Face GPT-2 of minippo_model's sizes, its parameters moved off their init."""
    import torch

    torch.manual_seed(seed)
    config = transformers.GPT2Config(vocab_size=VOCAB, n_positions=BLOCK, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=EOS, eos_token_id=EOS, pad_token_id=PAD, **config)
    model = getattr(transformers, cls)(config).to(torch_dtype(dtype)).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


def test_fixture_gives_the_logits_of_transformers(transformers):
    reference = transformers.GPT2LMHeadModel.from_pretrained(FIXTURE).eval()
    ids = token_batch(T=12)
    np.testing.assert_allclose(GPT.from_pretrained(FIXTURE).forward(ids), hf_logits(reference, ids), atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transformers_directory_loads_with_the_same_logits(transformers, tmp_path, dtype):
    reference = hf_model(transformers, "GPT2LMHeadModel", dtype)
    reference.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path, dtype=dtype)
    ids = token_batch()
    mask = np.ones_like(ids)
    mask[0, :4] = 0  # left padding
    np.testing.assert_allclose(model.forward(ids), hf_logits(reference, ids), rtol=0, atol=TOLERANCE[dtype])
    position_ids = np.maximum(mask.cumsum(1) - 1, 0)
    import torch

    with torch.no_grad():
        padded = reference(torch.tensor(ids), attention_mask=torch.tensor(mask),
                           position_ids=torch.tensor(position_ids)).logits.numpy()
    real = mask.astype(bool)
    np.testing.assert_allclose(model.forward(ids, mask)[real], padded[real], rtol=0, atol=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saved_directory_loads_in_transformers_with_the_same_logits(transformers, tmp_path, dtype):
    model = minippo_model(dtype)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["dtype"] == config["torch_dtype"] == np.dtype(dtype).name
    reference = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert reference.dtype == torch_dtype(dtype)
    ids = token_batch(1)
    np.testing.assert_allclose(hf_logits(reference, ids), model.forward(ids), rtol=0, atol=TOLERANCE[dtype])


def test_greedy_generation_gives_the_tokens_of_hf_generate(transformers, tmp_path):
    import torch

    reference = hf_model(transformers, "GPT2LMHeadModel", np.float64, seed=1)
    reference.save_pretrained(tmp_path)
    model = GPT.from_pretrained(tmp_path, dtype=np.float64)
    ids, mask = ByteTokenizer().encode_batch(["Q: hi A:", "Q: a longer one? A:"])  # left-padded
    with torch.no_grad():
        expected = reference.generate(torch.tensor(ids), attention_mask=torch.tensor(mask), max_new_tokens=12,
                                      do_sample=False, eos_token_id=EOS, pad_token_id=PAD).numpy()
    out = model.generate(ids, 12, temperature=0, attention_mask=mask, eos_token_id=EOS, pad_token_id=PAD)
    np.testing.assert_array_equal(out.tokens[:, :expected.shape[1]], expected)
    assert (out.tokens[:, expected.shape[1]:] == PAD).all()  # HF stops once every row has ended


def test_sharded_bf16_f16_and_pytorch_files_load(transformers, tmp_path):
    import torch

    reference = hf_model(transformers, "GPT2LMHeadModel")
    ids = token_batch(2)
    reference.save_pretrained(tmp_path / "sharded", max_shard_size="40KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    np.testing.assert_allclose(GPT.from_pretrained(tmp_path / "sharded").forward(ids), hf_logits(reference, ids),
                               atol=1e-5)
    for half in (torch.bfloat16, torch.float16):
        reference.to(half).save_pretrained(tmp_path / str(half))
        widened = reference.to(torch.float32)  # the half-precision values, exactly, in float32
        np.testing.assert_allclose(GPT.from_pretrained(tmp_path / str(half)).forward(ids),
                                   hf_logits(widened, ids), atol=1e-5)
    directory = tmp_path / "bin"
    directory.mkdir()
    (tmp_path / "sharded" / "config.json").rename(directory / "config.json")
    torch.save(reference.state_dict(), directory / "pytorch_model.bin")
    np.testing.assert_allclose(GPT.from_pretrained(directory).forward(ids), hf_logits(reference, ids), atol=1e-5)


def hf_scores(model, ids, mask=None, position_ids=None):
    import torch

    with torch.no_grad():
        return model(torch.tensor(ids), attention_mask=None if mask is None else torch.tensor(mask),
                     position_ids=None if position_ids is None else torch.tensor(position_ids)).logits[:, 0].numpy()


def test_reward_model_saved_by_minippo_scores_alike_in_transformers(transformers, tmp_path):
    model = reward_model()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    reference = transformers.GPT2ForSequenceClassification.from_pretrained(tmp_path).eval()
    texts = [prompt + response for prompt, response in zip(PROMPTS, RESPONSES)]
    ids, mask = ByteTokenizer().encode_batch(texts, add_eos=True, pad_left=False)  # HF's default positions
    normalization = config["reward_normalization"]
    expected = normalization["gain"] * hf_scores(reference, ids, mask) + normalization["bias"]
    np.testing.assert_allclose(model(PROMPTS, RESPONSES), expected, rtol=0, atol=1e-5)


def test_transformers_reward_model_scores_alike_in_minippo(transformers, tmp_path):
    reference = hf_model(transformers, "GPT2ForSequenceClassification", np.float64, seed=2, num_labels=1)
    reference.save_pretrained(tmp_path)
    model = RewardModel.from_pretrained(tmp_path, np.float64, tokenizer=ByteTokenizer())
    texts = [prompt + response for prompt, response in zip(PROMPTS, RESPONSES)]
    right_ids, right_mask = ByteTokenizer().encode_batch(texts, add_eos=True, pad_left=False)
    left_ids, left_mask = model.encode(PROMPTS, RESPONSES)
    expected = hf_scores(reference, right_ids, right_mask)
    np.testing.assert_allclose(model(PROMPTS, RESPONSES), expected, rtol=0, atol=1e-10)
    left = hf_scores(reference, left_ids, left_mask, np.maximum(left_mask.cumsum(1) - 1, 0))
    np.testing.assert_allclose(left, expected, rtol=0, atol=1e-10)  # left padding needs HF's position_ids

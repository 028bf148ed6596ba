"""``minippo export`` and ``minippo generate``: checkpoints out as Hugging Face directories, and samples
from either kind of model."""
import json

import numpy as np
import pytest

from minippo.cli import main
from minippo.commands.models import (
    is_model_directory,
    load_policy_and_tokenizer,
    load_reward_model,
)
from minippo.nn import GPT, GPTConfig
from minippo.nn.checkpoint import save_checkpoint
from minippo.rewards.reward_model import RewardModel
from minippo.text.tokenizer import ByteTokenizer

PROMPTS = ["Q: Where is the bank? A:", "Q: Hi? A:"]


@pytest.fixture
def checkpoints(tmp_path):
    policy = GPT(GPTConfig(vocab_size=258, block_size=48, n_layer=1, n_head=2, n_embd=16), seed=0)
    save_checkpoint(tmp_path / "policy.npz", policy.params, policy.config.to_dict(),
                    extra={"tokenizer": "byte"}, kind="gpt")
    reward = RewardModel.from_policy(policy, seed=1)
    reward.head.params["weight"][...] = np.random.default_rng(2).standard_normal((16, 1))
    reward.head.params["bias"][...] = 0.25
    reward.gain, reward.bias = 3.0, 0.5
    reward.save(tmp_path / "rm.npz")
    return policy, reward, tmp_path


def test_export_writes_directories_that_load_back(checkpoints, capsys):
    policy, reward, tmp_path = checkpoints
    out = tmp_path / "hf"
    assert main(["export", "--policy", str(tmp_path / "policy.npz"), "--reward", str(tmp_path / "rm.npz"),
                 "--out", str(out)]) == 0
    assert "GPT2ForSequenceClassification" in capsys.readouterr().out
    assert is_model_directory(out) and is_model_directory(out / "reward_model")
    loaded, tokenizer = load_policy_and_tokenizer(str(out))
    assert isinstance(tokenizer, ByteTokenizer)
    for name, value in policy.params.items():
        np.testing.assert_array_equal(loaded.params[name], value)
    responses = [" Over there.", " No."]
    np.testing.assert_allclose(load_reward_model(str(out / "reward_model"))(PROMPTS, responses),
                               reward(PROMPTS, responses), rtol=1e-6)
    assert main(["export", "--reward", str(tmp_path / "rm.npz"), "--out", str(tmp_path / "rm_only")]) == 0
    assert json.loads((tmp_path / "rm_only" / "config.json").read_text())["reward_normalization"]["gain"] == 3.0


def test_export_errors(checkpoints, capsys):
    _, _, tmp_path = checkpoints
    assert main(["export", "--out", str(tmp_path / "x")]) == 2
    assert "give --policy, --reward or both" in capsys.readouterr().err
    assert main(["export", "--policy", str(tmp_path / "policy.npz"), "--out", str(tmp_path / "rm.npz")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_generate_gives_the_same_samples_from_checkpoint_and_directory(checkpoints, capsys):
    _, _, tmp_path = checkpoints
    assert main(["export", "--policy", str(tmp_path / "policy.npz"), "--out", str(tmp_path / "hf")]) == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n", encoding="utf-8")
    outputs = []
    for policy in ("policy.npz", "hf"):
        out = tmp_path / f"{policy}.jsonl"
        assert main(["generate", "--policy", str(tmp_path / policy), "--prompts", str(prompts), "--out", str(out),
                     "--num-samples", "3", "--max-new-tokens", "10", "--top-k", "20", "--seed", "7"]) == 0
        outputs.append([json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()])
    assert outputs[0] == outputs[1]
    assert [(r["prompt"], r["sample"]) for r in outputs[0]] == [(p, s) for p in PROMPTS for s in range(3)]
    assert len({r["response"] for r in outputs[0]}) > 1  # sampled, not all alike
    capsys.readouterr()
    assert main(["generate", "--policy", str(tmp_path / "hf"), "--prompts", str(prompts), "--num-samples", "3",
                 "--max-new-tokens", "10", "--top-k", "20", "--seed", "7"]) == 0
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == outputs[0]  # JSON lines on stdout
    assert main(["generate", "--policy", str(tmp_path / "hf"), "--prompt", PROMPTS[0], "--temperature", "0",
                 "--num-samples", "2", "--max-new-tokens", "5"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == PROMPTS[0] and len(printed) == 3 and printed[1][4:] == printed[2][4:]  # greedy: alike


def test_generate_errors(checkpoints, capsys):
    _, _, tmp_path = checkpoints
    policy = str(tmp_path / "policy.npz")
    assert main(["generate", "--policy", policy, "--prompt", "Q:", "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "--out goes with --prompts" in capsys.readouterr().err
    assert main(["generate", "--policy", policy, "--prompt", "Q: hello A:", "--max-new-tokens", "40"]) == 2
    assert "--max-new-tokens 40 does not fit: the longest prompt has 11 tokens and the model's context is 48" \
        in capsys.readouterr().err
    assert main(["generate", "--policy", policy, "--prompt", ""]) == 2
    assert "prompt 0 is empty" in capsys.readouterr().err


def test_pretrain_continues_a_model_directory_with_its_tokenizer(tmp_path, capsys):
    """pretrain --init DIR starts from the directory's weights and sizes and tokenizes with its tokenizer."""
    fixture = "tests/fixtures/gpt2_tiny"
    data = tmp_path / "data.txt"
    data.write_text("the cat sat\non the mat\n" * 20, encoding="utf-8")
    assert main(["pretrain", "--init", fixture, "--data", str(data), "--steps", "3", "--batch-size", "4",
                 "--samples", "0", "--out", str(tmp_path / "run")]) == 0
    assert f"GPT from {fixture}" in capsys.readouterr().out
    start = GPT.from_pretrained(fixture)
    trained, tokenizer = load_policy_and_tokenizer(str(tmp_path / "run" / "model.npz"))
    assert trained.config.to_dict() == start.config.to_dict()
    expected = load_policy_and_tokenizer(fixture)[1]
    assert type(tokenizer) is type(expected) and tokenizer.encode("the cat") == expected.encode("the cat")
    moved = [name for name in start.params if not np.array_equal(start.params[name], trained.params[name])]
    assert "transformer.wte.weight" in moved

"""A user's own data on the command line: tokenizers, templates, JSON specs, long texts (issue 18)."""
import json
import time
import tracemalloc

import numpy as np
import pytest

from minippo.cli import main
from minippo.nn.gpt import GPT, GPTConfig
from minippo.rewards.reward_model import RewardModel, train_reward_model
from minippo.rlhf.rollout import generate_rollout
from minippo.text.corpus import format_prompt
from minippo.text.tokenizer import ByteTokenizer


def test_an_mrp_spec_with_a_repeated_key_is_refused(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}, "gamma": 0.5}', encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 2
    assert capsys.readouterr().err == f"minippo mrp: error: {path}: repeated key 'gamma'\n"
    path.write_text(json.dumps({"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}}), encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 0


def test_a_3_mb_answer_is_cut_to_the_context_before_padding():
    policy = GPT(GPTConfig(vocab_size=258, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    model = RewardModel.from_policy(policy, ByteTokenizer(), seed=0)
    huge = "x" * 3_000_000
    pairs = [{"prompt": f"q{i}", "chosen": huge if i == 0 else "Sure!", "rejected": "No."} for i in range(32)]
    tracemalloc.start()
    started = time.perf_counter()
    with pytest.warns(UserWarning, match="only their last 16 tokens are scored"):
        train_reward_model(model, pairs, steps=2, batch_size=32, seed=0, log=lambda line: None)
        scores = model([format_prompt("q")] * 32, [huge] + [" Sure!"] * 31)
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Padded to 3 M tokens, the batch alone would be 64 rows × 3e6 × 8 bytes × 2 arrays = 3 GB.
    assert peak < 200e6 and seconds < 10, (peak, seconds)
    assert scores.shape == (32,) and np.isfinite(scores).all()


def test_a_huge_prompt_is_refused_before_it_is_padded():
    policy = GPT(GPTConfig(vocab_size=258, block_size=16, n_layer=1, n_head=2, n_embd=16), seed=0)
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"prompt 1 \('x+'\) must be at most 12 tokens .* it has 3000000"):
        generate_rollout(policy, ByteTokenizer(), ["Q: hi A:", "x" * 3_000_000] * 16, 4, 1.0,
                         np.random.default_rng(0))
    assert tracemalloc.get_traced_memory()[1] < 200e6
    tracemalloc.stop()

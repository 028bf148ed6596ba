"""benchmarks/bench_rlhf.py runs (its tokenizer and reward model keep up with the library) and gives TRL the ids
minippo uses."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))

import _trl_rlhf  # noqa: E402
import bench_rlhf  # noqa: E402

from minippo.nn.gpt import GPT, GPTConfig  # noqa: E402
from minippo.text.tokenizer import ByteTokenizer  # noqa: E402


def test_a_tiny_config_with_a_reward_model_and_the_bare_train_step_runs(monkeypatch, capsys):
    tiny = dict(model=dict(vocab_size=40, block_size=24, n_layer=1, n_head=2, n_embd=16), batch_size=8,
                minibatch_size=4, prompt_length=6, max_new_tokens=10, critic="shared", reward_model=True,
                bare_train_step=(2, 24))
    monkeypatch.setitem(bench_rlhf.CONFIGS, "tiny", tiny)
    bench_rlhf.measure("tiny", iterations=1, warmup=0)
    printed = capsys.readouterr().out
    for phase in ("generate", "score", "forward", "train", "bare train step B2 T24"):
        assert phase in printed


def test_the_tokenizer_written_for_trl_gives_minippos_ids(tmp_path):
    pytest.importorskip("transformers")
    GPT(GPTConfig(**_trl_rlhf.MODEL), seed=0).save_pretrained(str(tmp_path), ByteTokenizer())
    _trl_rlhf.check_same_tokens(str(tmp_path))  # raises if an id differs
    assert _trl_rlhf.trl_reward(["Q"], ["sea"]) == [float(_trl_rlhf.RULE(["Q"], ["sea"])[0])]

"""Sizes the machine cannot hold are refused before any work, in one line naming the option (minippo.sizes)."""
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minippo.cli import main
from minippo.nn.gpt import GPT, GPTConfig
from minippo.sizes import (
    available_memory,
    check_memory,
    format_bytes,
    gpt_parameters,
    gpt_sizes,
    pretrain_memory,
)


@pytest.mark.parametrize("sizes", [dict(vocab_size=256, block_size=96, n_layer=2, n_head=4, n_embd=96),
                                   dict(vocab_size=11, block_size=7, n_layer=3, n_head=1, n_embd=5)])
def test_gpt_parameters_counts_what_the_gpt_holds(sizes):
    expected = GPT(GPTConfig(**sizes), seed=0).num_parameters()
    assert gpt_parameters(sizes["vocab_size"], sizes["block_size"], sizes["n_layer"], sizes["n_embd"]) == expected


@pytest.mark.parametrize("count, text", [(0, "0 B"), (950, "950 B"), (999_499, "999 kB"), (21_900_000_000, "21.9 GB"),
                                         (1.1e12, "1.1 TB"), (123_456_000_000_000, "123 TB"), (10**30, "1000000 YB")])
def test_format_bytes(count, text):
    assert format_bytes(count) == text


def test_available_memory_is_known_here():
    memory = available_memory()
    assert isinstance(memory, int) and memory > 0


MODEL = {"vocab_size": 256, "block_size": 96, "n_head": 4, "itemsize": 4, "tokens": 40}


def test_check_memory_blames_the_option_that_matters_most():
    options = {"--n-layer": 100_000, "--n-embd": 96, "--batch-size": 32}
    with pytest.raises(ValueError) as raised:
        check_memory(pretrain_memory, options, MODEL, available=21_900_000_000)
    message = str(raised.value)
    assert message.startswith("--n-layer 100000: needs ~") and message.endswith("; 21.9 GB available")
    assert "model and AdamW state" in message and "activations" in message and "\n" not in message
    with pytest.raises(ValueError, match=r"^--batch-size 1000000000: needs ~.*\(activations .*\)"):
        check_memory(pretrain_memory, {"--n-layer": 2, "--batch-size": 10**9}, {**MODEL, "n_embd": 96},
                     available=10**10)


def test_check_memory_passes_what_fits_and_anything_when_memory_is_unknown(monkeypatch):
    options = {"--n-layer": 2, "--n-embd": 96, "--batch-size": 32}
    need = check_memory(pretrain_memory, options, MODEL, available=10**10)
    assert 1e6 < need < 1e8  # a 250k-parameter GPT: 4 MB of state, ~40 MB of activations
    with pytest.raises(ValueError, match="needs"):
        check_memory(pretrain_memory, options, MODEL, available=need - 1)
    monkeypatch.setattr("minippo.sizes.available_memory", lambda: None)
    assert check_memory(pretrain_memory, {**options, "--n-layer": 10**9}, MODEL) > 1e15


def test_the_estimate_is_of_the_memory_a_model_really_holds():
    config = GPTConfig(vocab_size=256, block_size=96, n_layer=2, n_head=4, n_embd=96)
    parts = pretrain_memory(**gpt_sizes(config), batch_size=1, tokens=1)
    model_bytes = sum(value.nbytes for value in GPT(config, seed=0).params.values())
    assert parts["model and AdamW state"] == 4 * model_bytes


# --------------------------------------------------------------------- every command, absurd sizes
@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    out = tmp_path_factory.mktemp("sizes")
    assert main(["pretrain", "--out", str(out), "--steps", "2", "--batch-size", "2", "--n-layer", "1",
                 "--n-embd", "16", "--n-head", "2", "--samples", "0"]) == 0
    return out


SIZE_OPTIONS = [  # (command, option, other arguments); {policy} and {out} are filled in
    ("pretrain", "--n-layer", []), ("pretrain", "--n-embd", []), ("pretrain", "--batch-size", []),
    ("pretrain", "--block-size", []),
    ("rlhf", "--batch-size", ["--policy", "{policy}", "--reward", "length:5"]),
    ("reward-model", "--batch-size", ["--policy", "{policy}"]),
    ("dpo", "--batch-size", ["--policy", "{policy}"]),
    ("generate", "--num-samples", ["--policy", "{policy}", "--prompt", "Q: hi A:"]),
    ("grpo", "--n-layer", []), ("grpo", "--n-embd", []), ("grpo", "--prompts-per-iteration", []),
    ("grpo", "--num-generations", []),
    ("train-ppo", "--num-envs", ["--total-steps", str(2**120)]),
]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(SIZE_OPTIONS), exponent=st.integers(44, 100))
def test_any_absurd_size_fails_at_once_naming_its_option(workspace, capsys, case, exponent):
    command, option, others = case
    value = 2**exponent  # a power of two divides whatever it must (batch by minibatch, width by heads)
    has_out = command not in ("generate", "train-ppo")
    argv = [command, option, str(value), *(["--out", str(workspace / command)] if has_out else []),
            *(argument.format(policy=workspace / "model.npz") for argument in others)]
    capsys.readouterr()
    started = time.perf_counter()
    status = main(argv)
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith(f"minippo {command}: error: {option} {value}: needs ~") and err.count("\n") == 1, err
    assert "available" in err and "Traceback" not in err
    assert elapsed < 1.0

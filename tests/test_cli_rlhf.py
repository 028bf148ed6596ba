"""The RLHF commands end to end on tiny settings: reward-model, rlhf, value, demo."""
import json

import pytest

from minippo.cli import main


@pytest.fixture(scope="module")
def policy_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", "--out", str(out), "--steps", "30", "--batch-size", "8", "--n-layer", "1",
                 "--n-embd", "32", "--n-head", "2", "--samples", "0"]) == 0
    return str(out / "model.npz")


def test_reward_model_rlhf_and_value_commands(policy_checkpoint, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": f"Where is stop {i}?", "chosen": "Sure! Over there.",
                                           "rejected": "Ugh. Go away."}) for i in range(20)), encoding="utf-8")
    reward_path = tmp_path / "rm.npz"
    assert main(["reward-model", "--policy", policy_checkpoint, "--data", str(pairs), "--out", str(reward_path),
                 "--steps", "15", "--batch-size", "4"]) == 0
    assert "held-out preference accuracy" in capsys.readouterr().out

    out = tmp_path / "rlhf"
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", str(reward_path), "--iterations", "2",
                 "--batch-size", "16", "--max-new-tokens", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "iter   2/2" in printed and "kl" in printed
    assert (out / "policy.npz").exists() and (out / "rlhf_log.csv").read_text().count("\n") == 3

    assert main(["rlhf", "--policy", str(out / "policy.npz"), "--reward", "keyword:Sure", "--algo", "rloo",
                 "--iterations", "1", "--batch-size", "16", "--max-new-tokens", "8", "--out", str(out)]) == 0
    capsys.readouterr()

    assert main(["value", "--prompt", "Q: Where is the bank? A:", "--samples", "8", "--policy", policy_checkpoint,
                 "--reward", "length:10", "--max-new-tokens", "8"]) == 0
    assert "V(prompt) ≈" in capsys.readouterr().out


def test_commands_report_bad_input(policy_checkpoint, tmp_path, capsys):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "x", "chosen": "y"}\n', encoding="utf-8")
    assert main(["reward-model", "--policy", policy_checkpoint, "--data", str(broken)]) == 2
    assert "broken.jsonl:1" in capsys.readouterr().err
    assert main(["reward-model", "--policy", policy_checkpoint, "--data", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"minippo reward-model: error: [Errno 21] Is a directory: {str(tmp_path)!r}\n"
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", "nonsense"]) == 2
    assert "error" in capsys.readouterr().err
    assert main(["value", "--prompt", "hi", "--policy", str(tmp_path / "nope.npz")]) == 2
    assert "nope.npz" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_command_writes_its_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--pretrain-steps", "40", "--reward-steps", "10", "--iterations", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    for key in ("reward_before", "reward_after", "kl", "kl_target", "reward_model_accuracy", "seconds"):
        assert key in summary
    assert 0.0 <= summary["reward_model_accuracy"] <= 1.0
    printed = capsys.readouterr().out
    assert "before" in printed and "after" in printed and "1/4" in printed and "4/4" in printed
    assert (out / "rlhf_log.csv").exists()

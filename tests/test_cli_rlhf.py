"""The RLHF commands end to end on tiny settings: reward-model, rlhf, value, demo."""
import json

import pytest

from minippo.cli import main
from minippo.commands import preference_split
from minippo.commands.rlhf import read_prompts
from minippo.seeding import spawn_seeds


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

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Where is the bank?\r\n\nWhen does the cafe open?\n", encoding="utf-8")
    assert read_prompts(str(prompts)) == ["Where is the bank?", "When does the cafe open?"]
    assert main(["rlhf", "--policy", str(out / "policy.npz"), "--reward", "keyword:Sure", "--algo", "rloo",
                 "--iterations", "1", "--batch-size", "12", "--minibatch-size", "6", "--max-new-tokens", "8",
                 "--prompts", str(prompts), "--out", str(out), "--overwrite"]) == 0  # the first run's outputs
    capsys.readouterr()
    prompts.write_bytes("Q: Où est la banque ? A:".encode("latin-1"))
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", "length:5", "--prompts", str(prompts)]) == 2
    assert f"{prompts}: not UTF-8 text" in capsys.readouterr().err
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", "length:5", "--batch-size", "12"]) == 2
    assert "--batch-size (12) must be a multiple of --minibatch-size (16)" in capsys.readouterr().err

    assert main(["value", "--prompt", "Where is the bank?", "--samples", "8", "--policy", policy_checkpoint,
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
    # every stage has its own stream, derived from --seed (0), and the summary records the seeds run
    _, pretrain_seed, _, _, _, _, rlhf_seed, _ = spawn_seeds(0, 8)
    assert summary["config"]["seed"] == 0
    assert summary["config"]["pretrain"]["seed"] == pretrain_seed and summary["config"]["rlhf"]["seed"] == rlhf_seed


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mrp", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["value", "--prompt", "hi", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["value", "--prompt", "hi", "--show", "-1"], "argument --show: expected an integer >= 0, got '-1'"),
        (["value", "--prompt", "hi", "--samples", "1"], "argument --samples: expected an integer >= 2, got '1'"),
        (["reward-model", "--policy", "p.npz", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["reward-model", "--policy", "p.npz", "--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
        (["reward-model", "--policy", "p.npz", "--batch-size", "0"],
         "argument --batch-size: expected an integer >= 1, got '0'"),
        (["rlhf", "--policy", "p.npz", "--reward", "length:5", "--iterations", "0"],
         "argument --iterations: expected an integer >= 1, got '0'"),
        (["rlhf", "--policy", "p.npz", "--reward", "length:5", "--batch-size", "-4"],
         "argument --batch-size: expected an integer >= 1, got '-4'"),
        (["rlhf", "--policy", "p.npz", "--reward", "length:5", "--seed", "-1"],
         "argument --seed: expected an integer >= 0, got '-1'"),
        (["demo", "--iterations", "0"], "argument --iterations: expected an integer >= 1, got '0'"),
        (["demo", "--reward-steps", "-1"], "argument --reward-steps: expected an integer >= 1, got '-1'"),
        (["demo", "--pretrain-steps", "0"], "argument --pretrain-steps: expected an integer >= 1, got '0'"),
        (["demo", "--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
        (["demo", "--iterations", "two"], "argument --iterations: expected an integer >= 1, got 'two'"),
    ],
)
def test_counts_and_seeds_are_checked_when_the_options_are_parsed(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"minippo {argv[0]}: error: {message}"


def test_bad_rl_settings_are_reported_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as exit_info:  # not after a minute of pretraining
        main(["demo", "--out", str(out), "--kl-target", "0"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err.splitlines()[-1] == \
        "minippo demo: error: argument --rlhf-kl-target/--kl-target: expected > 0, or None for off, got '0'"
    # A cross-field rule is checked when the config is made, before any work:
    assert main(["demo", "--out", str(out), "--rlhf-batch-size", "6"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and not out.exists()
    assert captured.err == \
        "minippo demo: error: --rlhf-batch-size (6) must be a multiple of --rlhf-minibatch-size (16)\n"
    # The learning rate is refused when the options are parsed, before the (missing) policy is read:
    with pytest.raises(SystemExit) as exit_info:
        main(["rlhf", "--policy", str(tmp_path / "missing.npz"), "--reward", "length:5", "--lr", "-1"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == \
        "minippo rlhf: error: argument --learning-rate/--lr: expected > 0, got '-1'"
    # A cross-field rule is checked when the config is made, before the policy is read:
    assert main(["rlhf", "--policy", str(tmp_path / "missing.npz"), "--reward", "length:5", "--batch-size", "6"]) == 2
    assert capsys.readouterr().err == \
        "minippo rlhf: error: --batch-size (6) must be a multiple of --minibatch-size (16)\n"


def test_reward_model_checks_its_output_path_before_training(policy_checkpoint, tmp_path, capsys):
    assert main(["reward-model", "--policy", policy_checkpoint, "--out", str(tmp_path), "--steps", "1000"]) == 2
    assert capsys.readouterr() == ("", f"minippo reward-model: error: --out {tmp_path} is a directory, not a file\n")


def test_reward_model_needs_two_prompts_for_a_split(policy_checkpoint, tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pair = {"prompt": "Where?", "chosen": "Over there, sir.", "rejected": "Go away."}
    pairs.write_text(json.dumps(pair) + "\n" + json.dumps({**pair, "chosen": "Right here."}) + "\n", encoding="utf-8")
    assert main(["reward-model", "--policy", policy_checkpoint, "--data", str(pairs)]) == 2
    assert capsys.readouterr().err == (f"minippo reward-model: error: {pairs}: the pairs have 1 distinct prompt; a "
                                       f"train/test split by prompt needs at least 2 (one to train on, one to test)\n")
    pairs.write_text(json.dumps(pair) + "\n" + json.dumps({**pair, "prompt": "When?"}) + "\n", encoding="utf-8")
    assert main(["reward-model", "--policy", policy_checkpoint, "--data", str(pairs), "--test-fraction", "0.9"]) == 2
    assert capsys.readouterr().err == (f"minippo reward-model: error: {pairs}: --test-fraction 0.9 holds out all 2 "
                                       f"prompts, leaving none to train on\n")


def test_the_held_out_pairs_are_those_of_whole_prompts(tmp_path):
    pairs = [{"prompt": f"p{i % 7}", "chosen": f"good {i}", "rejected": f"bad {i}"} for i in range(40)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(pair) for pair in pairs), encoding="utf-8")
    for seed in range(5):
        train, test = preference_split(str(path), 0.3, seed)
        assert sorted(train + test, key=pairs.index) == pairs
        assert not {pair["prompt"] for pair in train} & {pair["prompt"] for pair in test}
        assert len({pair["prompt"] for pair in test}) == 2  # round(0.3 · 7 prompts)


def test_rule_reward_file_that_is_a_directory(policy_checkpoint, tmp_path, capsys):
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", f"rouge:{tmp_path}", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"minippo rlhf: error: [Errno 21] Is a directory: {str(tmp_path)!r}\n"


def test_responses_longer_than_the_context_are_refused_before_any_output(policy_checkpoint, tmp_path, capsys):
    out = tmp_path / "rlhf"
    assert main(["rlhf", "--policy", policy_checkpoint, "--reward", "length:10", "--max-new-tokens", "1000",
                 "--out", str(out)]) == 2
    assert "--max-new-tokens (1000) must be less than" in capsys.readouterr().err
    assert not (out / "config.json").exists()  # so the same command, corrected, is not refused as a rerun
    assert main(["demo", "--rlhf-max-new-tokens", "200", "--out", str(tmp_path / "demo")]) == 2  # before pretraining
    assert "--rlhf-max-new-tokens (200) must be less than the policy's --block-size (96)" in capsys.readouterr().err

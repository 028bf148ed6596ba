"""minippo.runs: outputs checked before the work, no clobbering, Ctrl-C ends with a resumable checkpoint,
periodic checkpoints rotate -- through the training commands that use it: train-ppo, rlhf, pretrain,
reward-model, dpo (the trainers' save/load_state alone: test_resume.py)."""
import argparse
import csv
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from minippo import atomic, runs
from minippo import pretrain as pretrain_module
from minippo.cli import main
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.rewards.reward_model import RewardModel
from minippo.rl.ppo import Trainer
from minippo.rlhf.trainer import RLHFTrainer
from minippo.text.tokenizer import ByteTokenizer

PPO_ARGS = ["train-ppo", "--num-envs", "2", "--total-steps", "1280"]  # 5 updates of 2 x 128 steps


def assert_same_weights(path, expected_path):
    """The checkpoints hold the same weights, bit for bit."""
    expected, got = load_checkpoint(expected_path), load_checkpoint(path)
    assert got["params"].keys() == expected["params"].keys()
    for name, value in expected["params"].items():
        np.testing.assert_array_equal(got["params"][name], value, err_msg=name)


def interrupt_after(monkeypatch, method, calls):
    """Send this process SIGINT during the ``calls``-th call of ``method`` (as a user's Ctrl-C would)."""
    owner, name = method
    original, count = getattr(owner, name), [0]

    def wrapped(*args, **kwargs):
        count[0] += 1
        if count[0] == calls:
            os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapped)


def run_interrupted(monkeypatch, capsys, argv, method, calls, where, resume):
    """``minippo argv`` interrupted during the ``calls``-th call of ``method`` ends with status 130 and prints
    ``interrupted at <where>; resume with: minippo <argv> <resume>``; returns what else it printed."""
    with monkeypatch.context() as patch:
        interrupt_after(patch, method, calls)
        assert main(argv) == runs.INTERRUPTED_STATUS
    out = capsys.readouterr().out
    last = f"interrupted at {where}; resume with: minippo {' '.join(argv)} {resume}\n"
    assert out.endswith(last)
    return out[:-len(last)]


def test_ctrl_c_during_train_ppo_saves_a_checkpoint_that_resumes_bit_identically(tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight.npz"
    assert main(PPO_ARGS + ["--save", str(straight), "--log-csv", str(tmp_path / "straight.csv")]) == 0
    capsys.readouterr()
    run = tmp_path / "run.npz"
    argv = PPO_ARGS + ["--save", str(run), "--log-csv", str(tmp_path / "run.csv")]
    out = run_interrupted(monkeypatch, capsys, argv, (Trainer, "collect_rollout"), 3,  # during the third update
                          "update 3", f"--resume {run}")
    assert out.endswith(f"wrote {run}\n")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    assert not (tmp_path / "run.csv").exists()  # outputs of a finished run only
    assert main(argv + ["--resume", str(run)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert_same_weights(run, straight)
    assert (tmp_path / "run.csv").read_text() == (tmp_path / "straight.csv").read_text()


def test_ctrl_c_without_a_checkpoint_path_says_that_nothing_was_saved(monkeypatch, capsys):
    interrupt_after(monkeypatch, (Trainer, "collect_rollout"), 1)
    assert main(PPO_ARGS) == runs.INTERRUPTED_STATUS
    assert capsys.readouterr().out.endswith("interrupted at update 1; nothing was saved (a run is resumable with "
                                            "--save PATH)\n")


def test_an_earlier_runs_outputs_are_not_overwritten_unless_asked(tmp_path, capsys):
    save, log = tmp_path / "run.npz", tmp_path / "run.csv"
    argv = PPO_ARGS[:4] + ["256", "--save", str(save), "--log-csv", str(log)]
    assert main(argv) == 0
    before = save.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    assert capsys.readouterr() == ("", f"minippo train-ppo: error: --save {save}: {save} exists (from an earlier "
                                       f"run); pass --overwrite to replace it, or --resume CHECKPOINT to continue "
                                       f"that run\n")
    assert save.read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0
    assert main(argv + ["--resume", str(tmp_path / "nosuch.npz")]) == 2  # a typo is not a fresh start
    assert capsys.readouterr().err == (f"minippo train-ppo: error: --resume {tmp_path / 'nosuch.npz'}: no such "
                                       f"checkpoint (to start a new run, leave out --resume)\n")


@pytest.mark.parametrize("problem", ["parent is a file", "read-only directory"])
def test_output_paths_are_checked_before_the_work(tmp_path, monkeypatch, capsys, problem):
    (tmp_path / "file").write_text("")
    if problem == "parent is a file":
        save, message = tmp_path / "file" / "run.npz", f"{tmp_path / 'file'} is a file, not a directory"
    else:  # as a user without the right sees it (tests may run as root, whom permissions do not stop)
        monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
        save, message = tmp_path / "run.npz", f"cannot write in the directory {tmp_path} (permission denied)"
    assert main(PPO_ARGS + ["--save", str(save)]) == 2
    assert capsys.readouterr() == ("", f"minippo train-ppo: error: --save {save}: {message}\n")


def test_periodic_checkpoints_keep_the_latest(tmp_path, capsys):
    save = tmp_path / "run.npz"
    assert main(PPO_ARGS + ["--save", str(save), "--save-every", "2", "--keep", "1"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["run.config.json", "run.npz", "run.step4.npz"]
    assert load_checkpoint(tmp_path / "run.step4.npz")["extra"]["trainer"]["history"]["updates"][-1]["update"] == 4
    assert main(PPO_ARGS + ["--save", str(save), "--save-every", "2"]) == 2  # an earlier run's
    assert "run.npz exists" in capsys.readouterr().err
    save.unlink()
    assert main(PPO_ARGS + ["--save", str(save), "--save-every", "2"]) == 2  # its periodic checkpoints count too
    assert "run.step4.npz exists" in capsys.readouterr().err
    assert main(PPO_ARGS + ["--save", str(save), "--save-every", "2", "--overwrite"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["run.config.json", "run.npz", "run.step2.npz", "run.step4.npz"]
    assert main(PPO_ARGS + ["--save-every", "2"]) == 2
    assert capsys.readouterr().err.endswith("--save-every needs --save PATH (the periodic checkpoints are written "
                                            "beside it)\n")


def test_the_resume_command_replaces_resume_and_overwrite():
    args = argparse.Namespace(command_line=["rlhf", "--overwrite", "--resume", "old.npz", "--out", "my runs"])
    assert runs.resume_command(args, "my runs/policy.npz") == \
        "minippo rlhf --out 'my runs' --resume 'my runs/policy.npz'"
    args = argparse.Namespace(command_line=["pretrain", "--resume", "--steps", "9"])
    assert runs.resume_command(args, None) == "minippo pretrain --steps 9 --resume"
    assert runs.resume_command(args, None, ranks=4) == "mpiexec -n 4 minippo pretrain --steps 9 --resume"


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_run_with_a_checkpoint_and_no_traceback(tmp_path, signal_number):
    """A real process and a real signal, as Ctrl-C or a cluster scheduler sends it."""
    save = tmp_path / "run.npz"
    process = subprocess.Popen([sys.executable, "-m", "minippo", "train-ppo", "--num-envs", "2", "--total-steps",
                                "100000000", "--save", str(save)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        for line in process.stdout:
            if line.startswith("update"):  # training is under way
                process.send_signal(signal_number)
                break
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == runs.INTERRUPTED_STATUS
    assert "Traceback" not in err and f"{signal_number.name}: stopping after this step" in err
    assert f"resume with: minippo train-ppo --num-envs 2 --total-steps 100000000 --save {save} --resume {save}" in out
    assert load_checkpoint(save)["step"] > 0


@pytest.fixture
def tiny_policy(tmp_path):
    policy = GPT(GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=16),
                 seed=0)
    path = tmp_path / "policy-start.npz"
    save_checkpoint(path, policy.params, policy.config.to_dict(), extra={"tokenizer": "byte"}, kind="gpt")
    return str(path)


def log_without_timings(path):
    with open(path, newline="") as file:
        return [{key: value for key, value in row.items() if not key.startswith("time/")}
                for row in csv.DictReader(file)]


def test_ctrl_c_during_rlhf_saves_a_run_that_resumes_bit_identically(tiny_policy, tmp_path, monkeypatch, capsys):
    options = ["rlhf", "--policy", tiny_policy, "--reward", "length:5", "--iterations", "3", "--batch-size", "4",
               "--minibatch-size", "2", "--max-new-tokens", "6", "--samples-every", "1"]
    assert main(options + ["--out", str(tmp_path / "straight")]) == 0
    argv = options + ["--out", str(tmp_path / "run")]
    checkpoint = tmp_path / "run" / "policy.npz"
    run_interrupted(monkeypatch, capsys, argv, (RLHFTrainer, "iteration"), 2, "iteration 2", f"--resume {checkpoint}")
    assert main(argv) == 2  # the interrupted run's outputs are not overwritten by a new run
    assert capsys.readouterr().err.startswith(f"minippo rlhf: error: --out {tmp_path / 'run'}: {checkpoint} exists")
    assert main(argv + ["--resume", str(checkpoint)]) == 0
    assert_same_weights(checkpoint, tmp_path / "straight" / "policy.npz")
    assert log_without_timings(tmp_path / "run" / "rlhf_log.csv") == \
        log_without_timings(tmp_path / "straight" / "rlhf_log.csv")
    assert (tmp_path / "run" / "samples.jsonl").read_text() == (tmp_path / "straight" / "samples.jsonl").read_text()


def test_ctrl_c_during_pretrain_saves_a_checkpoint_that_resumes_bit_identically(tmp_path, monkeypatch, capsys):
    data = tmp_path / "text.txt"
    data.write_text("hello world\nminippo learns\n" * 10, encoding="utf-8")
    options = ["pretrain", "--data", str(data), "--steps", "6", "--batch-size", "4", "--n-layer", "1", "--n-embd",
               "16", "--n-head", "2", "--block-size", "32", "--samples", "0"]
    assert main(options + ["--out", str(tmp_path / "straight")]) == 0
    argv = options + ["--out", str(tmp_path / "run")]
    assert main(argv + ["--resume"]) == 2  # nothing to resume: an error, not a fresh start
    assert capsys.readouterr().err == (f"minippo pretrain: error: --resume: {tmp_path / 'run' / 'model.npz'} does "
                                       f"not exist (to start a new run, leave out --resume)\n")
    run_interrupted(monkeypatch, capsys, argv, (pretrain_module, "sample_batch"), 3, "step 3", "--resume")
    checkpoint = tmp_path / "run" / "model.npz"
    assert load_checkpoint(checkpoint)["step"] == 3
    assert main(argv) == 2
    assert f"{checkpoint} exists (from an earlier run)" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
    assert_same_weights(checkpoint, tmp_path / "straight" / "model.npz")


def test_ctrl_c_during_reward_model_saves_a_checkpoint_that_resumes_bit_identically(tiny_policy, tmp_path,
                                                                                     monkeypatch, capsys):
    options = ["reward-model", "--policy", tiny_policy, "--steps", "5", "--batch-size", "4"]
    assert main(options + ["--out", str(tmp_path / "straight.npz")]) == 0
    out = tmp_path / "rm.npz"
    argv = options + ["--out", str(out)]
    run_interrupted(monkeypatch, capsys, argv, (RewardModel, "raw_scores"), 2,  # during the second step
                    "step 2", f"--resume {out}")
    assert main(argv + ["--resume", str(out)]) == 0
    assert_same_weights(out, tmp_path / "straight.npz")
    assert main(argv + ["--resume", str(out), "--overwrite"]) == 2  # a finished model is not a stopped run
    assert "holds a trained reward model, not a stopped training run" in capsys.readouterr().err


def test_dpo_keeps_an_earlier_runs_outputs_unless_told(tiny_policy, tmp_path, capsys):
    argv = ["dpo", "--policy", tiny_policy, "--steps", "1", "--batch-size", "2", "--out", str(tmp_path / "dpo")]
    assert main(argv) == 0
    before = (tmp_path / "dpo" / "policy.npz").read_bytes()
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"minippo dpo: error: --out {tmp_path / 'dpo'}: "
                                              f"{tmp_path / 'dpo' / 'policy.npz'} exists (from an earlier run)")
    assert (tmp_path / "dpo" / "policy.npz").read_bytes() == before
    assert main(argv + ["--overwrite"]) == 0


def test_a_full_disk_is_a_one_line_error_naming_the_file(tmp_path, monkeypatch, capsys):
    def full(descriptor):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    save = tmp_path / "run.npz"
    assert main(PPO_ARGS[:4] + ["256", "--save", str(save)]) == 1  # the OS failed, not the user
    written_first = tmp_path / "run.config.json"  # the settings, before any training
    assert capsys.readouterr().err == \
        f"minippo train-ppo: error: [Errno 28] No space left on device: {str(written_first)!r}\n"
    assert os.listdir(tmp_path) == []  # no temporary file left behind


def test_ctrl_c_outside_a_training_loop_ends_without_a_traceback(monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "__init__", interrupted)  # e.g. while the environments are being built
    assert main(PPO_ARGS) == runs.INTERRUPTED_STATUS
    assert capsys.readouterr() == ("", "minippo train-ppo: interrupted\n")


@pytest.mark.parametrize("command", [["rlhf", "--reward", "length:5"], ["pretrain"], ["reward-model"], ["dpo"]])
@pytest.mark.parametrize("problem", ["parent is a file", "read-only directory"])
def test_every_training_command_checks_its_output_before_the_work(tiny_policy, tmp_path, monkeypatch, capsys,
                                                                   command, problem):
    (tmp_path / "file").write_text("")
    if problem == "parent is a file":
        out, message = tmp_path / "file" / "out", f"{tmp_path / 'file'} is a file, not a directory"
    else:
        out = tmp_path / "out"
        monkeypatch.setattr(runs.os, "access", lambda path, mode: False)
        message = "(permission denied)"
    policy = [] if command == ["pretrain"] else ["--policy", tiny_policy]
    assert main(command + policy + ["--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"minippo {command[0]}: error: --out {out}") and message in captured.err
    assert captured.err.count("\n") == 1 and "step" not in captured.out and "iter" not in captured.out

"""``minippo grpo`` end to end on tiny settings: its outputs, the same summary from the same seed, --policy."""
import contextlib
import csv
import io
import json

import pytest

from minippo.cli import main
from minippo.commands.models import checkpoint_tokenizer
from minippo.seeding import spawn_seeds
from minippo.tasks.arithmetic import Problem, parse_prompt
from minippo.tasks.pipeline import (
    SEED_NAMES,
    ArithmeticRLConfig,
    iteration_prompts,
    trainer_config,
)
from minippo.text.bpe import BPETokenizer
from tests.test_options import read_events

# a model that has learnt to write numbers after "A:" in 80 steps, so the format reward gives the RL a signal
TINY = ["--pretrain-steps", "80", "--n-layer", "1", "--n-embd", "32", "--iterations", "2",
        "--prompts-per-iteration", "4", "--num-generations", "4", "--eval-problems", "16", "--format-reward", "0.5"]
TIMINGS = ("seconds", "seconds_pretrain", "seconds_rl")


def without_timings(summary):
    return {key: value for key, value in summary.items() if key not in TIMINGS}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The same tiny run twice, seed 0: the directories and what was printed."""
    runs = []
    for name in ("first", "second"):
        out = tmp_path_factory.mktemp(name)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert main(["grpo", "--out", str(out), *TINY]) == 0
        runs.append((out, printed.getvalue()))
    return runs


def test_grpo_writes_its_outputs(tiny_run):
    out, printed = tiny_run[0]
    summary = json.loads((out / "summary.json").read_text())
    for key in ("accuracy_before", "accuracy_after", "greedy_accuracy_before", "greedy_accuracy_after"):
        assert 0.0 <= summary[key] <= 1.0
    assert summary["kl"] != 0.0  # the format reward moved the policy (a k1 estimate on 16 samples: either sign)
    assert summary["seconds"] >= summary["seconds_pretrain"] + summary["seconds_rl"] > 0
    assert summary["seeds"] == dict(zip(SEED_NAMES, spawn_seeds(0, len(SEED_NAMES))))
    assert summary["config"]["pretrain"]["seed"] == summary["seeds"]["pretrain"]
    assert summary["rl_config"]["seed"] == summary["seeds"]["rl"]
    assert summary["rl_config"]["batch_size"] == summary["rl_config"]["minibatch_size"] == 16
    with open(out / "rl_log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["iteration"] for row in rows] == ["1", "2"]
    assert any(float(row["grad_norm"]) > 0 for row in rows)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 == summary["eval_problems"]
    assert all(sample["answer"] == parse_prompt(sample["prompt"]).answer for sample in samples)
    assert (out / "policy.npz").exists() and (out / "rl.png").read_bytes().startswith(b"\x89PNG")
    for stage in ("1/4", "2/4", "3/4", "4/4"):
        assert f"== {stage}" in printed
    assert "iter   2/2" in printed and "eta" in printed and "accuracy, sampled (T=1)" in printed


def test_same_seed_gives_the_same_summary(tiny_run):
    (first, _), (second, _) = tiny_run
    summaries = [json.loads((out / "summary.json").read_text()) for out in (first, second)]
    assert without_timings(summaries[0]) == without_timings(summaries[1])
    assert (first / "samples.jsonl").read_text() == (second / "samples.jsonl").read_text()


def test_given_policy_is_not_pretrained_and_starts_where_it_was_left(tiny_run, tmp_path, capsys):
    first, _ = tiny_run[0]
    trained = json.loads((first / "summary.json").read_text())
    out = tmp_path / "again"
    assert main(["grpo", "--out", str(out), "--policy", str(first / "policy.npz"), "--algo", "reinforce",
                 *TINY]) == 0
    assert "not pretrained here" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    # the same held-out problems, sampled with the same seed, from the policy the first run wrote
    assert summary["accuracy_before"] == trained["accuracy_after"]
    assert summary["greedy_accuracy_before"] == trained["greedy_accuracy_after"]
    assert summary["rl_config"]["algo"] == "reinforce"


def test_every_algorithm_samples_num_generations_per_problem():
    config = ArithmeticRLConfig(prompts_per_iteration=2, num_generations=3)
    problems = [Problem(1, "+", 2), Problem(3, "+", 4)]
    for algo, prompts in [("rloo", ["Q: 1+2= A:", "Q: 3+4= A:"]),
                          ("reinforce", ["Q: 1+2= A:"] * 3 + ["Q: 3+4= A:"] * 3)]:
        rl_config = trainer_config(ArithmeticRLConfig(algo=algo, prompts_per_iteration=2, num_generations=3), 0)
        assert rl_config.batch_size == 6
        assert iteration_prompts(problems, rl_config, config.num_generations) == prompts


def test_dr_grpo_options_reach_the_trainer(monkeypatch):
    """--scale-rewards and --loss-type are the RLHFConfig's (Dr. GRPO: none and dr_grpo); left out, the
    algorithm's defaults."""
    import minippo.commands.grpo as command
    configs = []
    monkeypatch.setattr(command, "run_arithmetic_rl", lambda config, **_: configs.append(config))
    assert main(["grpo", "--scale-rewards", "none", "--loss-type", "dr_grpo"]) == 0
    assert main(["grpo", "--algo", "ppo"]) == 0
    dr_grpo, ppo = (trainer_config(config, 0) for config in configs)
    assert (dr_grpo.algo, dr_grpo.scale_rewards, dr_grpo.loss_type) == ("grpo", "none", "dr_grpo")
    assert (ppo.algo, ppo.scale_rewards, ppo.loss_type) == ("ppo", "group", None)


def test_config_is_checked_before_any_stage_runs(capsys):
    for settings, error, message in [
            ({"num_generations": 1}, ValueError, "num_generations must be an integer >= 2, got 1"),
            ({"algo": "dpo"}, ValueError, "algo must be one of"),
            ({"learning_rate": 0.0}, ValueError, "learning_rate must be > 0, got 0.0"),
            ({"loss_type": "mean"}, ValueError, "loss_type must be one of"),
            ({"scale_rewards": "std"}, ValueError, "scale_rewards must be one of"),
            ({"format_reward": 1.0}, ValueError, "format_reward must be in [0, 1)"),
            ({"pretrain": {"steps": 1}}, TypeError, "pretrain must be a PretrainConfig, got dict")]:
        with pytest.raises(error) as raised:
            ArithmeticRLConfig(**settings)
        assert str(raised.value).startswith(message)
    assert main(["grpo", "--policy", "/nonexistent/policy.npz"]) == 2
    assert "/nonexistent/policy.npz" in capsys.readouterr().err


def test_grpo_pretrains_with_the_given_tokenizer_and_logs_to_tensorboard(tmp_path, capsys):
    bpe = BPETokenizer.train("\n".join(f"Q: {a}+{b}= A: {a + b}" for a in range(12) for b in range(12)), 270)
    bpe.save(tmp_path / "bpe.json")
    out = tmp_path / "grpo"
    assert main(["grpo", "--out", str(out), "--tokenizer", f"bpe:{tmp_path / 'bpe.json'}", "--tensorboard",
                 str(tmp_path / "tb"), "--pretrain-steps", "2", "--pretrain-batch-size", "4", "--n-layer", "1",
                 "--n-embd", "16", "--iterations", "2", "--prompts-per-iteration", "2", "--num-generations", "2",
                 "--eval-problems", "4"]) == 0
    capsys.readouterr()
    trained = checkpoint_tokenizer(out / "policy.npz")
    assert trained.vocab_size == bpe.vocab_size and trained.encode("Q: 12+7= A: 19") == bpe.encode("Q: 12+7= A: 19")
    events = read_events(tmp_path / "tb")
    assert [event.step for event in events.Scalars("objective/scores")] == [1, 2]
    assert main(["grpo", "--out", str(out), "--policy", str(out / "policy.npz"), "--tokenizer", "byte"]) == 2
    assert capsys.readouterr().err == (f"minippo grpo: error: --tokenizer cannot be used with --policy: "
                                       f"{out / 'policy.npz'} brings its own tokenizer\n")

"""Evaluation: streamed episode returns, periodic evaluation with best checkpoints and stop-at (control and
RLHF), and that evaluating never changes a training run."""
import argparse
import copy
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from minippo import envs
from minippo.cli import main
from minippo.commands import evaluate as evaluate_command
from minippo.nn.checkpoint import load_checkpoint
from minippo.progress import Progress
from minippo.rl.evaluation import (
    EvaluationTracker,
    PeriodicEvaluation,
    evaluate_episodes,
    evaluate_policy,
)
from minippo.rl.ppo import Trainer, find_wrapper, load_policy
from minippo.rl.ppo_config import PPOConfig, preset_for
from minippo.rlhf.evaluation import PeriodicRLHFEvaluation, evaluate_rlhf
from minippo.rlhf.rollout import response_logprobs
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from tests.test_rlhf import (
    PROMPT,
    RESPONSE_LENGTH,
    TinyTokenizer,
    count_a,
    every_response_rollout,
    tiny_policy,
)

CARTPOLE = PPOConfig(num_envs=4, num_steps=32, num_minibatches=2, total_steps=4 * 32 * 6, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A briefly trained CartPole policy, its trainer and its checkpoint."""
    trainer = Trainer(replace(CARTPOLE, total_steps=4 * 32 * 2))
    trainer.train()
    path = tmp_path_factory.mktemp("policy") / "policy.npz"
    trainer.save(path)
    return trainer, path


# -- streaming ------------------------------------------------------------------------------------------
def test_evaluate_episodes_streams_chunks_of_first_episodes(trained):
    agent = trained[0].agent
    env = envs.make("CartPole-v1", num_envs=4, seed=5)
    statistics = evaluate_episodes(agent, env, 10, np.random.default_rng(0))
    env = envs.make("CartPole-v1", num_envs=4, seed=5)  # the same chunks by hand: reset, first episode of each copy
    rng = np.random.default_rng(0)
    returns = np.concatenate([evaluate_policy(agent, env, rng) for _ in range(3)])[:10]
    assert statistics.count == 10
    assert statistics.mean == pytest.approx(returns.mean(), rel=1e-12)
    assert statistics.std == pytest.approx(returns.std(), rel=1e-12)
    assert (statistics.min, statistics.max) == (returns.min(), returns.max())
    again = evaluate_episodes(agent, envs.make("CartPole-v1", num_envs=4, seed=5), 10, np.random.default_rng(0))
    assert again.metrics() == statistics.metrics()  # reproducible from the seeds
    one_chunk = evaluate_episodes(agent, envs.make("CartPole-v1", num_envs=4, seed=5), 4, np.random.default_rng(0))
    first = evaluate_policy(agent, envs.make("CartPole-v1", num_envs=4, seed=5), np.random.default_rng(0))
    assert (one_chunk.mean, one_chunk.std) == (first.mean(), first.std())  # one chunk: exactly numpy's figures


def test_a_huge_episode_count_starts_in_flat_memory(trained):
    agent = trained[0].agent
    env = envs.make("CartPole-v1", num_envs=64, seed=0)
    chunks = []
    tracemalloc.start()
    try:
        statistics = evaluate_episodes(agent, env, 10**9, np.random.default_rng(0),
                                       on_chunk=lambda s: chunks.append(s.count) or len(chunks) == 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert chunks == [64, 128, 192] and statistics.count == 192
    assert peak < 2_000_000, peak  # a few chunks' arrays, nothing of the size of 10**9 episodes


def test_evaluate_command_streams_and_reports_what_finished_on_ctrl_c(trained, capsys):
    path = str(trained[1])
    parser = argparse.ArgumentParser()
    evaluate_command.register(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "--load", path, "--episodes", "1000000000", "--deterministic"])

    def interrupt_after_two(statistics):
        if statistics.count >= 128:
            raise KeyboardInterrupt

    assert evaluate_command.run(args, on_chunk=interrupt_after_two) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "interrupted after 128 of 1,000,000,000 episodes"
    assert lines[1].startswith("CartPole-v1: mean return ") and lines[1].endswith("over 128 episodes (deterministic)")
    assert main(["evaluate", "--load", path, "--episodes", "70", "--seed", "1"]) == 0  # two chunks: 64 + 6
    assert capsys.readouterr().out.rstrip().endswith("over 70 episodes (sampled actions)")


def test_progress_of_a_long_evaluation_gives_an_eta(trained, capsys):
    agent = trained[0].agent
    progress = Progress(12, "episodes", interval=0.0)
    evaluate_episodes(agent, envs.make("CartPole-v1", num_envs=4, seed=0), 12, np.random.default_rng(0),
                      on_chunk=lambda statistics: progress.update(statistics.count, f"mean {statistics.mean:.1f}")
                      and False)  # (a true value would stop the evaluation)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in lines] == ["episodes 4/12 (33%)", "episodes 8/12 (66%)",
                                                        "episodes 12/12 (100%)"]
    assert all("ETA" in line and "mean " in line for line in lines)


# -- the tracker --------------------------------------------------------------------------------------
def test_tracker_keeps_the_best_and_stops_at_the_target():
    saved, lines = [], []
    tracker = EvaluationTracker("eval/x", "update", stop_at=5.0, best_path="best.npz", log=lines.append)
    assert not tracker.record(1, {"eval/x": 1.0}, saved.append, "x 1")
    assert not tracker.record(2, {"eval/x": 0.5}, saved.append, "x 0.5")
    assert not tracker.record(3, {"eval/x": 3.0}, saved.append, "x 3")
    assert saved == ["best.npz", "best.npz"] and (tracker.best_step, tracker.best_value) == (3, 3.0)
    assert tracker.record(4, {"eval/x": 5.0}, saved.append, "x 5")
    assert lines[-1] == "eval/x 5.000 reached --stop-at 5: stopping"
    assert tracker.summary() == "best eval/x 5.000 at update 4 (best.npz)"
    assert EvaluationTracker("eval/x", "update").summary() == "no evaluation ran"

    resumed, saved = EvaluationTracker("eval/x", "update", best_path="best.npz", log=lines.append), []
    resumed.replay([1, 2, 3], [{"eval/x": 1.0}, {"loss": 9.0}, {"eval/x": 3.0}])  # a resumed run's log
    assert (resumed.best_step, resumed.best_value) == (3, 3.0)
    resumed.record(4, {"eval/x": 2.0}, saved.append, "x 2")
    assert saved == [] and resumed.summary() == "best eval/x 3.000 at update 3 (best.npz)"  # best.npz kept
    with pytest.raises(ValueError, match="stop_at must be a finite number"):
        EvaluationTracker("eval/x", "update", stop_at=float("nan"))


# -- control: periodic evaluation ------------------------------------------------------------------------
def training_figures(history):
    """What a run trained on and produced, without timings and evaluation figures."""
    return ([{k: v for k, v in row.items() if k not in ("time", "sps") and not k.startswith("eval/")}
             for row in history.updates], history.episodes)


def test_evaluating_does_not_change_the_training_run_and_best_is_the_best_steps_policy(tmp_path):
    config = replace(preset_for("Pendulum-v1"), num_envs=2, num_steps=64, num_minibatches=2, total_steps=2 * 64 * 6,
                     seed=2)  # normalised observations and rewards: the statistics must not be touched
    plain = Trainer(config)
    plain_history = plain.train()

    trainer = Trainer(config)
    evaluation = PeriodicEvaluation(trainer, every=2, episodes=3, best_path=str(tmp_path / "best.npz"),
                                    log=lambda line: None)
    params_at, means = {}, {}

    def callback(trainer, stats):
        stop = evaluation(trainer, stats)
        if "eval/mean_return" in stats:
            params_at[stats["update"]] = copy.deepcopy(trainer.agent.params)
            means[stats["update"]] = stats["eval/mean_return"]
        return stop

    history = trainer.train(callback)
    np.testing.assert_equal(training_figures(history), training_figures(plain_history))  # NaN == NaN here
    for name, value in plain.agent.params.items():
        np.testing.assert_array_equal(trainer.agent.params[name], value)
    assert evaluation.normalizer.obs_rms is not find_wrapper_obs_rms(trainer)  # a copy, frozen
    assert evaluation.normalizer.obs_rms.count == find_wrapper_obs_rms(trainer).count

    assert sorted(means) == [2, 4, 6]
    best = max(means, key=means.get)
    assert evaluation.tracker.best_step == best
    state = load_checkpoint(tmp_path / "best.npz")
    assert state["step"] == best * config.num_envs * config.num_steps
    for name, value in params_at[best].items():
        np.testing.assert_array_equal(state["params"][name], value)
    assert evaluation.evaluate(trainer).metrics() == evaluation.evaluate(trainer).metrics()  # deterministic


def find_wrapper_obs_rms(trainer):
    return find_wrapper(trainer.env, envs.NormalizeObservation).obs_rms


def test_stop_at_stops_training():
    trainer = Trainer(CARTPOLE)
    evaluation = PeriodicEvaluation(trainer, every=2, episodes=2, stop_at=1.0, log=lambda line: None)
    history = trainer.train(evaluation)
    assert len(history.updates) == 2 and history.updates[-1]["eval/mean_return"] >= 1.0


def test_train_ppo_eval_options(tmp_path, capsys):
    save = tmp_path / "run" / "policy.npz"
    assert main(["train-ppo", "--num-envs", "4", "--total-steps", "2048", "--eval-every", "2", "--eval-episodes",
                 "3", "--save", str(save)]) == 0
    out = capsys.readouterr().out
    assert out.count("eval at update") == 2 and "over 3 episodes" in out
    summary = next(line for line in out.splitlines() if line.startswith("best eval/mean_return"))
    assert summary.endswith(f"({tmp_path / 'run' / 'best.npz'})")
    agent, _, _ = load_policy(tmp_path / "run" / "best.npz")  # minippo evaluate reads it
    assert main(["train-ppo", "--num-envs", "4", "--total-steps", "512", "--stop-at", "100"]) == 2
    assert "--stop-at needs --eval-every" in capsys.readouterr().err


# -- RLHF -------------------------------------------------------------------------------------------------
def rlhf_trainer(seed=4):
    config = RLHFConfig(batch_size=8, minibatch_size=4, max_new_tokens=RESPONSE_LENGTH, learning_rate=3e-2,
                        init_kl_coef=0.01, kl_target=None, seed=7)
    return RLHFTrainer(tiny_policy(seed=seed), count_a, TinyTokenizer(), config)


def exact_reward_and_kl(policy, reference):
    """E_π[R] and KL(π ‖ π_ref) of whole responses, by enumerating every response."""
    rollout = every_response_rollout()
    logprobs = response_logprobs(policy, rollout, 1.0)[0].sum(axis=1)
    ref_logprobs = response_logprobs(reference, rollout, 1.0)[0].sum(axis=1)
    probability = np.exp(logprobs)
    return probability @ count_a(None, rollout.responses), probability @ (logprobs - ref_logprobs)


def test_evaluate_rlhf_estimates_the_exact_reward_and_kl():
    trainer = rlhf_trainer()
    trainer.reference = tiny_policy(seed=5)  # another policy, so that the KL is not 0
    reward, kl = exact_reward_and_kl(trainer.policy, trainer.reference)
    prompts = [PROMPT] * 2000
    metrics = evaluate_rlhf(trainer, prompts=prompts, seed=0, batch_size=500)
    assert metrics["eval/responses"] == 2000
    assert metrics["eval/reward"] == pytest.approx(reward, abs=4 * metrics["eval/reward_std"] / np.sqrt(2000))
    assert metrics["eval/kl"] == pytest.approx(kl, abs=0.1 * kl)
    assert evaluate_rlhf(trainer, prompts=prompts, seed=0, batch_size=500) == metrics  # reproducible
    assert evaluate_rlhf(trainer, prompts=prompts, seed=1, batch_size=500) != metrics

    greedy = evaluate_rlhf(trainer.policy, count_a, [PROMPT] * 3, reference=trainer.reference,
                           tokenizer=TinyTokenizer(), max_new_tokens=RESPONSE_LENGTH, greedy=True, batch_size=2)
    assert greedy["eval/reward_std"] == 0.0 and greedy["eval/kl"] > 0  # one response, three times
    same = evaluate_rlhf(trainer.policy, count_a, [PROMPT], reference=trainer.policy, tokenizer=TinyTokenizer(),
                         max_new_tokens=RESPONSE_LENGTH, greedy=True)
    assert same["eval/kl"] == 0.0
    with pytest.raises(TypeError, match="evaluate_rlhf needs tokenizer"):
        evaluate_rlhf(trainer.policy, count_a, [PROMPT], reference=trainer.policy, max_new_tokens=3)


def test_rlhf_evaluation_does_not_change_training_and_keeps_the_best_policy(tmp_path, monkeypatch):
    monkeypatch.setattr("minippo.rlhf.evaluation.tokenizer_record", lambda tokenizer: "tiny")  # no GPT-2 files
    def run(evaluation_every):
        trainer = rlhf_trainer()
        evaluation = PeriodicRLHFEvaluation(trainer, evaluation_every, [PROMPT] * 16, best_path=str(tmp_path / "b.npz"),
                                            log=lambda line: None) if evaluation_every else None
        rows, params_at = [], {}
        for iteration in range(1, 5):
            row = trainer.iteration([PROMPT] * 8)
            rows.append({k: v for k, v in row.items() if not k.startswith("time/")})
            if evaluation is not None:
                evaluation(iteration, row)
                if "eval/reward" in row:
                    params_at[iteration] = copy.deepcopy(trainer.policy.params)
        return rows, trainer, evaluation, params_at

    plain_rows, plain, _, _ = run(0)
    rows, trainer, evaluation, params_at = run(2)
    assert rows == plain_rows
    for name, value in plain.params.items():
        np.testing.assert_array_equal(trainer.params[name], value)
    assert sorted(params_at) == [2, 4]
    state = load_checkpoint(tmp_path / "b.npz")
    for name, value in params_at[evaluation.tracker.best_step].items():
        np.testing.assert_array_equal(state["params"][name], value)

    trainer = rlhf_trainer()
    with pytest.raises(ValueError, match=r"prompt 1 \('aaaaaa'\) must be at most 5 tokens"):  # before any training
        PeriodicRLHFEvaluation(trainer, 1, [PROMPT, "a" * 6])
    stopping = PeriodicRLHFEvaluation(trainer, 1, [PROMPT] * 4, stop_at=0.0, log=lambda line: None)
    assert stopping(1, {})  # a count of 'a' is always >= 0


def test_rlhf_command_eval_options(tmp_path, capsys):
    pretrained = tmp_path / "pretrain"
    assert main(["pretrain", "--out", str(pretrained), "--steps", "5", "--batch-size", "4", "--n-layer", "1",
                 "--n-embd", "16", "--n-head", "2", "--samples", "0"]) == 0
    prompts = tmp_path / "held_out.txt"
    prompts.write_text("Q: Where is the bank? A:\nQ: When does the cafe open? A:\n", encoding="utf-8")
    out = tmp_path / "rlhf"
    assert main(["rlhf", "--policy", str(pretrained / "model.npz"), "--reward", "length:5", "--iterations", "3",
                 "--batch-size", "8", "--minibatch-size", "4", "--max-new-tokens", "6", "--out", str(out),
                 "--eval-every", "1", "--eval-prompts", str(prompts), "--eval-greedy", "--stop-at", "-1000"]) == 0
    printed = capsys.readouterr().out
    assert "eval at iteration 1: reward" in printed and "over 2 held-out responses  (best, wrote" in printed
    assert "reached --stop-at -1000: stopping" in printed and "iter   2/3" not in printed
    assert "best eval/reward" in printed and (out / "best.npz").exists()
    log = (out / "rlhf_log.csv").read_text().splitlines()
    assert len(log) == 2 and "eval/reward" in log[0].split(",")

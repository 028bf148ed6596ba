"""Data parallelism (minippo.distributed) under a real ``mpiexec -n 2``, against one process.

Each test runs a program of tests/mpi_programs.py once in one process on the whole batch and once on two
ranks with half of it each, and compares what rank 0 wrote.  They skip only without mpi4py or mpiexec
(``pip install ".[mpi]"`` installs both); in CI that skip is a failure.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minippo.distributed import (
    LOCAL,
    SIZE_VARIABLES,
    checksum,
    checksum_all,
    launched_size,
    local_moments,
    merged_moments,
    merged_moments_each,
    row_moments,
)
from minippo.nn.checkpoint import load_checkpoint
from minippo.rl.actor_critic import flat_views

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = Path(__file__).with_name("mpi_programs.py")
TIMEOUT = 60  # seconds; a hang in a collective would exceed it


def find_mpiexec():
    """The mpiexec next to this Python (a venv's, from the mpich wheel) or on PATH."""
    return shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]))


@pytest.fixture(scope="module")
def mpiexec():
    pytest.importorskip("mpi4py")
    path = find_mpiexec()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail('mpiexec not found: pip install ".[mpi]" installs the mpich wheel, which brings it')
        pytest.skip("mpiexec not found (pip install \".[mpi]\")")
    return path


def run(command, cwd=None):
    """Run ``command`` with this worktree's minippo, outside any MPI job of our own; the CompletedProcess."""
    env = {name: value for name, value in os.environ.items() if name not in SIZE_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd)


def run_program(program, out=None, ranks=None, mpiexec=None):
    """Run ``program`` of mpi_programs.py, in one process or on ``ranks`` ranks."""
    command = [sys.executable, str(PROGRAMS), program] + ([str(out)] if out else [])
    return run(command if ranks is None else [mpiexec, "-n", str(ranks)] + command)


def one_and_two_ranks(program, tmp_path, mpiexec):
    """What ``program`` wrote in one process and on two ranks, as two dicts of arrays."""
    results = []
    for ranks in (None, 2):
        out = tmp_path / f"{program}-{ranks}.npz"
        completed = run_program(program, out, ranks, mpiexec)
        assert completed.returncode == 0, completed.stderr
        with np.load(out) as data:
            results.append(dict(data))
    return results


def test_two_ranks_with_half_the_batch_take_the_optimiser_steps_of_one_process(tmp_path, mpiexec):
    """PPO loss in float64 (per-minibatch whitening, value and gradient clipping): six Adam steps."""
    single, double = one_and_two_ranks("ppo-equivalence", tmp_path, mpiexec)
    assert single.keys() == double.keys() and any(name.startswith("param/") for name in single)
    for name in single:
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-10, err_msg=name)
    assert single["5/grad_norm"] > 0.5 and single["5/clipfrac"] > 0  # the clips were active
    assert abs(single["4/loss"] - single["0/loss"]) > 1e-3  # the same minibatch after four steps: they moved


def test_global_statistics_equal_the_single_process_ones(tmp_path, mpiexec):
    """Whitening (masked), running mean/std merging, and a training run with both normalisation wrappers."""
    single, double = one_and_two_ranks("statistics", tmp_path, mpiexec)
    for results in (single, double):  # all the groups in one collective give what one collective each gives
        np.testing.assert_array_equal(results["mean_std_groups"], results["mean_std_groups_one_by_one"])
        np.testing.assert_array_equal(results["mean_std_columns"], results["mean_std_columns_one_by_one"])
    for name in ("whiten", "whiten_scale", "rms_mean", "rms_var", "mean_std_lopsided", "mean_std_groups",
                 "mean_std_columns"):
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-12, err_msg=name)
    for name in ("gathered_float32", "gathered_int", "gathered_bool", "gathered_values", "gathered_empty_rows"):
        assert double[name].dtype == single[name].dtype and double[name].shape == single[name].shape, name
        np.testing.assert_array_equal(double[name], single[name], err_msg=name)
    for results in (single, double):  # several arrays of mixed dtypes in one gather: as one gather each
        for name in ("float32", "int", "bool", "values", "empty_rows"):
            each, alone = results[f"each_{name}"], results[f"gathered_{name}"]
            assert each.dtype == alone.dtype and each.shape == alone.shape, name
            np.testing.assert_array_equal(each, alone, err_msg=name)
    for name in ("rms_count", "obs_count", "return_count", "updates", "global_step"):
        assert double[name] == single[name], name
    assert single["obs_count"] == 4 * (2 * 32 + 1) and single["global_step"] == 256


def test_ppo_update_equals_its_textbook_twin_bit_for_bit(tmp_path, mpiexec):
    """Trainer.ppo_update (every epoch's whitening statistics in one collective, the diagnostics averaged
    by the last step, gradients averaged in place) against the update as first written, in one process
    and on two ranks: every diagnostic and parameter bit for bit."""
    for results in one_and_two_ranks("ppo-update-twins", tmp_path, mpiexec):
        fast = [name for name in results if "/fast/" in name]
        assert len(fast) > 20
        for name in fast:
            np.testing.assert_array_equal(results[name], results[name.replace("/fast/", "/textbook/")], err_msg=name)
        assert results["target_kl/fast/steps"] < results["plain/fast/steps"] == 3 * 4 * 4  # it stopped early


def test_two_ranks_pretrain_like_one_process(tmp_path, mpiexec):
    """GPT pretraining loss in float64, the ranks holding unequal numbers of tokens: six AdamW steps."""
    single, double = one_and_two_ranks("pretraining", tmp_path, mpiexec)
    for name in single:
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-10, err_msg=name)
    assert single["losses"][-1] < single["losses"][0] - 0.3


def test_two_ranks_pretrain_through_the_fused_loss_like_one_process(tmp_path, mpiexec):
    """The same through GPT.loss (vocabularies over FUSED_LOSS_MIN_VOCAB): the ranks' shares scale the
    fused LM head's loss and gradient, and the run equals one process's, and the textbook path's."""
    single, double = one_and_two_ranks("pretraining-fused", tmp_path, mpiexec)
    completed = run_program("pretraining", tmp_path / "textbook.npz")
    assert completed.returncode == 0, completed.stderr
    with np.load(tmp_path / "textbook.npz") as textbook:
        for name in single:
            np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-10, err_msg=name)
            np.testing.assert_allclose(single[name], textbook[name], rtol=0, atol=1e-10, err_msg=name)


def test_two_ranks_train_a_reward_model_like_one_process(tmp_path, mpiexec):
    single, double = one_and_two_ranks("reward-model", tmp_path, mpiexec)
    for name in single:
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-10, err_msg=name)
    assert single["losses"][-1] < single["losses"][0]


def test_two_ranks_run_rlhf_ppo_iterations_like_one_process(tmp_path, mpiexec):
    """Two RLHF PPO iterations with the rollouts fixed: gradients, whitening over response tokens, the
    adaptive KL controller (global KL) and every returned figure."""
    single, double = one_and_two_ranks("rlhf", tmp_path, mpiexec)
    for name in single:
        np.testing.assert_allclose(double[name], single[name], rtol=0, atol=1e-10, err_msg=name)
    assert single["1/objective/beta"] != single["0/objective/beta"] and single["1/objective/kl_k1"] != 0
    assert single["0/grad_norm"] > 1.0


def test_a_run_on_two_ranks_resumes_on_one(tmp_path, mpiexec):
    """Pretraining checkpointed after 3 steps on two ranks, resumed to 6 in one process, equals 6 steps in one."""
    for program, ranks in [("pretraining-first-half", 2), ("pretraining-resumed", None)]:
        completed = run_program(program, tmp_path / f"{program}.npz", ranks, mpiexec)
        assert completed.returncode == 0, completed.stderr
    (tmp_path / "straight").mkdir()
    completed = run_program("pretraining", tmp_path / "straight" / "out.npz")
    assert completed.returncode == 0, completed.stderr
    half, resumed, straight = (dict(np.load(tmp_path / name)) for name in
                               ("pretraining-first-half.npz", "pretraining-resumed.npz", "straight/out.npz"))
    assert len(half["losses"]) == len(resumed["losses"]) == 3
    np.testing.assert_allclose(np.concatenate([half["losses"], resumed["losses"]]), straight["losses"],
                               rtol=0, atol=1e-10)
    for name in straight:
        if name.startswith("param/"):
            np.testing.assert_allclose(resumed[name], straight[name], rtol=0, atol=1e-10, err_msg=name)


def test_a_rank_that_raises_stops_the_job_with_its_message(mpiexec):
    started = time.perf_counter()
    completed = run_program("fail", ranks=2, mpiexec=mpiexec)
    assert completed.returncode != 0 and time.perf_counter() - started < 20
    assert "[rank 1] ValueError: rank 1 failed on purpose" in completed.stderr


def test_a_killed_rank_stops_the_job(mpiexec):
    started = time.perf_counter()
    completed = run_program("killed", ranks=2, mpiexec=mpiexec)
    assert completed.returncode != 0 and time.perf_counter() - started < 20


def test_diverged_parameters_stop_the_run_naming_the_step(mpiexec):
    completed = run_program("diverge", ranks=2, mpiexec=mpiexec)
    assert completed.returncode != 0
    assert "the parameters of ranks [1] differ from rank 0's at update 3 (in actor.layers.0.bias)" in completed.stderr


def test_bad_input_on_every_rank_ends_the_command_with_its_message(mpiexec, tmp_path):
    completed = run([mpiexec, "-n", "2", sys.executable, "-m", "minippo", "train-ppo", "--num-envs", "3",
                     "--total-steps", "1000"], cwd=tmp_path)
    assert completed.returncode != 0
    assert "--num-envs=3 must be divisible by the number of MPI ranks, 2" in completed.stderr


def test_train_ppo_on_two_ranks_prints_once_and_writes_once(mpiexec, tmp_path):
    completed = run([mpiexec, "-n", "2", sys.executable, "-m", "minippo", "train-ppo", "--num-envs", "4",
                     "--total-steps", "1024", "--save", "policy.npz", "--log-csv", "episodes.csv"], cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0].endswith("2 MPI ranks") and sum(line.startswith("done:") for line in lines) == 1
    assert (tmp_path / "policy.npz").exists() and (tmp_path / "episodes.csv").exists()


@pytest.mark.parametrize("command", [["demo", "--out", "out"], ["grpo", "--out", "out"], ["mrp"]])
def test_commands_that_are_not_data_parallel_refuse_several_ranks_before_any_work(mpiexec, tmp_path, command):
    started = time.perf_counter()
    completed = run([mpiexec, "-n", "2", sys.executable, "-m", "minippo", *command], cwd=tmp_path)
    assert completed.returncode != 0 and time.perf_counter() - started < 20
    assert f"minippo {command[0]} runs in one process, not on 2 MPI ranks: run it without mpiexec" in completed.stderr
    assert completed.stdout == "" and not (tmp_path / "out").exists()


def test_one_process_imports_nothing_and_changes_nothing():
    assert launched_size({}) == 1 and launched_size({"PMI_SIZE": "4"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    code = ("import sys, minippo.rl.ppo, minippo.distributed as d; "
            "assert d.world() is d.LOCAL and 'mpi4py' not in sys.modules")
    completed = run([sys.executable, "-c", code])
    assert completed.returncode == 0, completed.stderr
    values = np.arange(5.0)
    assert LOCAL.gather_rows(values) is values and LOCAL.rank_seed(7) == 7 and LOCAL.share(6, "n") == 6
    assert LOCAL.mean_std(values) == (values.mean(), values.std())
    with pytest.raises(ValueError, match="at least one"):
        LOCAL.mean_std(values[:0])


def test_merged_moments_of_groups_equal_those_of_their_union():
    """Far from 0 (where Σx² − n·mean² would cancel), with an empty group and groups of unequal sizes."""
    values = 1e8 + np.random.default_rng(0).normal(0.0, 1.0, 101)
    groups = [values[:60], values[60:60], values[60:61], values[61:]]
    count, mean, std = merged_moments(np.concatenate([local_moments(group) for group in groups]))
    assert count == 101
    assert mean == pytest.approx(values.mean(), rel=1e-15)
    assert std == pytest.approx(values.std(), rel=1e-7)  # Σx² − n·mean² would lose every digit here
    assert merged_moments(np.concatenate([local_moments(values[:0])] * 2)) == (0, 0.0, 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_statistics_of_equal_groups_in_one_pass_equal_those_group_by_group_bit_for_bit(dtype):
    """Sizes whose division rounds; up to 13 "ranks" (NumPy sums 8 or more numbers pairwise), some empty."""
    rng = np.random.default_rng(2)
    for size in (1, 7, 2049):
        groups = [(1e3 + rng.normal(0.0, 10.0, size)).astype(dtype) for _ in range(5)]
        one_pass, one_by_one = LOCAL.mean_std_groups(groups), [LOCAL.mean_std(values) for values in groups]
        assert all(type(a) is dtype and a == b for pair, expected in zip(one_pass, one_by_one)
                   for a, b in zip(pair, expected))
        assert len(one_pass) == 5 and LOCAL.mean_std_groups(groups + [groups[0][:1]])[:5] == one_pass
        np.testing.assert_array_equal(row_moments(np.stack(groups)),
                                      np.concatenate([local_moments(values) for values in groups]))
        for ranks in (1, 2, 9, 13):
            for empty in (False, True):
                every = np.stack([local_moments(values[:rank] if empty else values * (1 + rank / 7))
                                  for rank in range(ranks) for values in groups]).reshape(ranks, 5, 3)
                counts, means, stds = merged_moments_each(every.transpose(1, 0, 2))
                for group in range(5):
                    assert (counts[group], means[group], stds[group]) == merged_moments(every[:, group])


def test_one_checksum_of_all_the_parameters_is_the_sum_of_theirs():
    rng = np.random.default_rng(3)
    sizes = {"w": (5, 3), "b": (3,), "log_std": (2,)}
    flat = rng.normal(size=20).astype(np.float32)
    views = flat_views(flat, {name: np.empty(shape) for name, shape in sizes.items()})  # read as flat (one pass)
    separate = {name: value.copy() for name, value in views.items()}  # read array by array
    for arrays in (views, separate, {**separate, "counts": np.arange(3, dtype=np.uint64)}):
        assert checksum_all(arrays) == sum(checksum(value) for value in arrays.values()) % 2**64
    assert checksum_all(views) == checksum(flat) == checksum_all(separate)
    views["b"][1] += 1.0
    assert checksum_all(views) != checksum_all(separate) and checksum_all({}) == 0
    loaded = {"w": np.frombuffer(flat.tobytes(), dtype=np.float32)}  # a view of bytes (as safetensors loads)
    assert checksum_all(loaded) == checksum(flat)


def test_checksum_changes_with_any_element():
    rng = np.random.default_rng(1)
    for array in (rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=7), np.arange(5, dtype=np.uint8)):
        total = checksum(array)
        assert checksum(array.copy()) == total and checksum(array.T) == checksum(np.ascontiguousarray(array.T))
        for index in range(array.size):
            changed = array.copy().reshape(-1)
            changed.view(np.uint8)[index * array.itemsize] ^= 1  # the lowest bit of one element
            assert checksum(changed) != total, (array.dtype, index)


def run_in(folder, program, ranks, mpiexec):
    """Run ``program`` with OUT = folder/<program>-<ranks>.npz (beside the run's checkpoint); what it wrote
    and its stderr."""
    out = folder / f"{program}-{ranks or 1}.npz"
    completed = run_program(program, out, ranks, mpiexec)
    assert completed.returncode == 0, completed.stderr
    return dict(np.load(out)), completed.stderr


@pytest.mark.parametrize("saved_on, resumed_on", [(2, None), (None, 2)])
def test_a_ppo_run_resumes_on_another_number_of_ranks(tmp_path, mpiexec, saved_on, resumed_on):
    """Saved after 2 updates on N ranks, continued to 4 on the other N: the weights, optimiser, statistics,
    counters and history carry over, every environment continues its episode from where it was (regrouped
    into the new ranks' shares), and the continued run is reproducible."""
    saved, _ = run_in(tmp_path, "ppo-save", saved_on, mpiexec)
    resumed, stderr = run_in(tmp_path, "ppo-resume", resumed_on, mpiexec)
    assert f"saved by {saved_on or 1} MPI rank" in stderr and f"continues on {resumed_on or 1}:" in stderr
    assert f"4 environments continue their episodes, {4 // (resumed_on or 1)} per rank" in stderr
    assert "random streams start anew from (seed 3, rank, update 2)" in stderr
    assert resumed["start/updates"] == 2 and resumed["start/global_step"] == saved["global_step"] == 2 * 64
    for name in saved:
        if name.startswith("param/"):
            np.testing.assert_array_equal(resumed[f"start/{name}"], saved[name], err_msg=name)
    np.testing.assert_array_equal(resumed["losses"][:2], saved["losses"])
    np.testing.assert_array_equal(resumed["episodes"][:len(saved["episodes"])], saved["episodes"])
    assert resumed["global_step"] == 4 * 64 and len(resumed["losses"]) == 4
    ranks = load_checkpoint(tmp_path / "ppo.npz", kind="ppo_policy")["extra"]["trainer"]["ranks"]  # the first run's
    cartpoles = [rank["env"]["env"]["env"] for rank in ranks]  # inside NormalizeReward(NormalizeObservation(...))
    expected = {"state": np.concatenate([np.transpose(cartpole["state"]) for cartpole in cartpoles]),
                "episode_lengths": np.concatenate([cartpole["episode_lengths"] for cartpole in cartpoles]),
                "discounted_returns": np.concatenate([rank["env"]["discounted_returns"] for rank in ranks]),
                "next_obs": np.concatenate([rank["next_obs"] for rank in ranks])}
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[f"start/{name}"], value, err_msg=name)
    assert expected["episode_lengths"].min() > 0  # episodes were running: they continue
    again, _ = run_in(tmp_path, "ppo-resume", resumed_on, mpiexec)
    for name in resumed:
        np.testing.assert_array_equal(again[name], resumed[name], err_msg=name)


def test_a_ppo_run_resumed_on_as_many_ranks_is_bit_identical(tmp_path, mpiexec):
    run_in(tmp_path, "ppo-save", 2, mpiexec)
    resumed, stderr = run_in(tmp_path, "ppo-resume", 2, mpiexec)
    straight, _ = run_in(tmp_path, "ppo-straight", 2, mpiexec)
    assert "continues on" not in stderr
    for name in straight:
        np.testing.assert_array_equal(resumed[name], straight[name], err_msg=name)


@pytest.mark.parametrize("saved_on, resumed_on", [(2, None), (None, 2)])
def test_an_rlhf_run_resumes_on_another_number_of_ranks(tmp_path, mpiexec, saved_on, resumed_on):
    """One iteration saved on N ranks, one more on the other N: the weights, optimiser, β and counters carry
    over, and the continued run is reproducible."""
    saved, _ = run_in(tmp_path, "rlhf-save", saved_on, mpiexec)
    resumed, stderr = run_in(tmp_path, "rlhf-resume", resumed_on, mpiexec)
    assert f"saved by {saved_on or 1} MPI rank" in stderr and f"continues on {resumed_on or 1}:" in stderr
    assert "sampling streams start anew from (seed 1, rank, iteration 1)" in stderr
    assert resumed["start/iterations"] == 1 and resumed["iterations"] == 2
    assert resumed["start/beta"] == saved["beta"] != 0.3  # the adaptive KL coefficient moved, and carried over
    params = [name for name in saved if name.startswith("param/")]
    for name in params:
        np.testing.assert_array_equal(resumed[f"start/{name}"], saved[name], err_msg=name)
    assert sum(not np.array_equal(resumed[name], saved[name]) for name in params) > len(params) / 2  # it trained on
    again, _ = run_in(tmp_path, "rlhf-resume", resumed_on, mpiexec)
    for name in resumed:
        np.testing.assert_array_equal(again[name], resumed[name], err_msg=name)

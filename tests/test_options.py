"""Generated command-line options, --config files, config.json, recipes by action space, and TensorBoard."""
import argparse
import csv
import json
from dataclasses import fields

import numpy as np
import pytest

from minippo.cli import main
from minippo.commands import train_ppo as train_ppo_command
from minippo.commands.options import (
    add_config_option,
    add_setting_options,
    apply_settings,
    chosen_settings,
    options_named,
)
from minippo.nn.checkpoint import load_checkpoint
from minippo.rl import ppo_config
from minippo.rl.ppo_config import PPOConfig, choose_preset, recipe_for
from minippo.rlhf.config import RLHFConfig
from minippo.run_log import METRIC_NAMES, RunLog


def parse_ppo(argv):
    parser = argparse.ArgumentParser()
    train_ppo_command.register(parser.add_subparsers())
    return parser.parse_args(["train-ppo", *argv])


def read_events(directory):
    """TensorBoard's own reader over ``directory`` (skips the test without tensorboard and tensorboardX)."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    pytest.importorskip("tensorboardX")
    accumulator = event_accumulator.EventAccumulator(str(directory), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def logged_text(events, tag):
    """The first text logged under ``tag``."""
    return events.Tensors(f"{tag}/text_summary")[0].tensor_proto.string_val[0].decode()


def without_times(path):
    """The rows of a CSV log without its timing columns (all that a repeated run changes)."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return [{key: value for key, value in row.items() if not key.startswith("time")} for row in rows]


def usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.splitlines()[-1]


def test_every_ppo_and_rlhf_field_is_an_option_with_its_help_and_default(capsys):
    for command, config, skipped in [("train-ppo", PPOConfig(), ()), ("rlhf", RLHFConfig(), ("seed",))]:
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        for spec in fields(config):
            if spec.name not in skipped:
                assert f"--{spec.name.replace('_', '-')}" in text, spec.name
                assert " ".join(spec.metadata["help"].split()[:3]) in text, spec.name
    assert "--learning-rate X, --lr X" in text and "--fixed-kl BETA" in text
    assert "(default: 0.0001; > 0)" in text  # RLHFConfig.learning_rate: its default and rule


@pytest.mark.parametrize("argv, message", [
    (["--gamma", "1.5"], "argument --gamma: expected in [0, 1], got '1.5'"),
    (["--num-envs", "2.5"], "argument --num-envs: expected an integer >= 1, got '2.5'"),
    (["--hidden-sizes", "64,x"], "argument --hidden-sizes: expected positive integers, got '64,x'"),
    (["--algo", "a2c"], "argument --algo: invalid choice: 'a2c'"),
    (["--ent-coef", "none"], "argument --ent-coef: expected >= 0, got 'none'"),
])
def test_a_bad_option_is_an_argparse_error_naming_it(argv, message, capsys):
    assert usage_error(["train-ppo", *argv], capsys).startswith(f"minippo train-ppo: error: {message}")


def test_options_are_read_by_their_field_type():
    args = parse_ppo(["--hidden-sizes", "32,16", "--no-anneal-lr", "--target-kl", "0.02", "--max-grad-norm", "none",
                      "--total-steps", "1e4", "--lr", "1e-3", "--env", "Pendulum-v1"])
    chosen, config = train_ppo_command.config_from_args(args)
    assert config.hidden_sizes == (32, 16) and config.anneal_lr is False and config.target_kl == 0.02
    assert config.max_grad_norm is None and config.total_steps == 10_000 and config.learning_rate == 1e-3
    assert chosen == "preset pendulum" and config.normalize_obs  # the preset's, under the options given


def test_preset_then_config_file_then_options(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"num_envs": 8, "learning_rate": 1e-3, "hidden_sizes": [16, 16]}))
    _, config = train_ppo_command.config_from_args(parse_ppo(["--preset", "cartpole", "--config", str(path),
                                                              "--lr", "5e-4"]))
    assert config.num_envs == 8 and config.hidden_sizes == (16, 16)  # from the file
    assert config.learning_rate == 5e-4  # the option over the file
    assert config.total_steps == ppo_config.PRESETS["cartpole"].total_steps  # the preset under both
    toml = tmp_path / "settings.toml"
    toml.write_text('num_envs = 2\nnormalize_obs = true\nenv_id = "Pendulum-v1"\n')
    chosen, config = train_ppo_command.config_from_args(parse_ppo(["--config", str(toml)]))
    assert (config.num_envs, config.normalize_obs, chosen) == (2, True, "preset pendulum")


@pytest.mark.parametrize("content, message", [
    ('{"num_env": 8}', "unknown setting 'num_env'"),
    ("[1, 2]", "expected a table of settings, got list"),
    ("{not json", "not valid JSON"),
    ('{"num_envs": "8"}', "num_envs must be an integer >= 1, got str '8'"),
    ('{"gamma": 2}', "gamma must be in [0, 1], got 2"),
])
def test_a_bad_config_file_is_an_error_naming_the_file(tmp_path, capsys, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert main(["train-ppo", "--config", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"minippo train-ppo: error: {path}: {message}") and error.count("\n") == 1


def test_config_json_repeats_a_train_ppo_run_exactly(tmp_path, capsys):
    first, second = tmp_path / "first.npz", tmp_path / "again" / "second.npz"
    assert main(["train-ppo", "--num-envs", "2", "--num-steps", "64", "--total-steps", "300", "--hidden-sizes", "8",
                 "--seed", "5", "--no-norm-adv", "--gamma", "0.9", "--save", str(first)]) == 0
    written = tmp_path / "first.config.json"
    assert json.loads(written.read_text())["hidden_sizes"] == [8]
    assert main(["train-ppo", "--config", str(written), "--save", str(second)]) == 0
    printed = capsys.readouterr().out
    assert "(--total-steps 300 is 2 updates of 128 = 256 steps)" in printed
    assert (tmp_path / "again" / "second.config.json").read_text() == written.read_text()
    a, b = load_checkpoint(first, kind="ppo_policy"), load_checkpoint(second, kind="ppo_policy")
    assert a["config"] == b["config"]
    for name, value in a["params"].items():
        np.testing.assert_array_equal(b["params"][name], value)


def test_rlhf_settings_come_from_a_config_file_and_fixed_kl_stands_for_two(tmp_path):
    from minippo.commands import rlhf as rlhf_command
    parser = argparse.ArgumentParser()
    rlhf_command.register(parser.add_subparsers())
    path = tmp_path / "rlhf.toml"
    path.write_text('iterations = 3\nbatch_size = 32\nalgo = "rloo"\nkl_estimator = "k3"\n')
    args = parser.parse_args(["rlhf", "--policy", "p", "--reward", "length:5", "--config", str(path),
                              "--fixed-kl", "0.05", "--seed", "2"])
    run_settings, config = rlhf_command.settings_from_args(args)
    assert (run_settings.iterations, run_settings.seed, config.batch_size, config.algo) == (3, 2, 32, "rloo")
    assert config.kl_estimator == "k3" and config.init_kl_coef == 0.05 and config.kl_target is None


def test_settings_of_a_nested_config_and_skipped_fields():
    from minippo.tasks.pipeline import ArithmeticRLConfig
    parser = argparse.ArgumentParser()
    add_config_option(parser)
    add_setting_options(parser, ArithmeticRLConfig(), skip=("pretrain_seed",))
    assert "--pretrain-seed" not in parser.format_help()
    args = parser.parse_args(["--pretrain-steps", "7", "--num-generations", "4"])
    config = apply_settings(ArithmeticRLConfig(), chosen_settings(args), skip=("pretrain_seed",))
    assert config.pretrain.steps == 7 and config.num_generations == 4
    assert config.pretrain.batch_size == ArithmeticRLConfig().pretrain.batch_size


def test_a_task_without_a_preset_gets_the_recipe_of_its_action_space(monkeypatch, capsys):
    assert recipe_for("Pendulum-v1") == "continuous" and recipe_for("CartPole-v1") == "discrete"
    monkeypatch.setattr(ppo_config, "DEFAULT_PRESET", {})
    chosen, config = choose_preset("Pendulum-v1")
    assert chosen == "continuous recipe" and config.env_id == "Pendulum-v1"
    assert (config.num_envs, config.num_steps, config.num_minibatches, config.update_epochs) == (1, 2048, 32, 10)
    assert config.normalize_obs and config.normalize_reward and config.ent_coef == 0.0
    assert choose_preset("CartPole-v1")[0] == "discrete recipe"
    assert choose_preset(None, "hopper")[1].env_id == "gymnasium:Hopper-v5"  # a preset names its environment


def test_progress_shows_a_dash_until_an_episode_ends(capsys):
    assert main(["train-ppo", "--env", "Pendulum-v1", "--num-steps", "64", "--num-minibatches", "2",
                 "--total-steps", "64", "--hidden-sizes", "8"]) == 0  # Pendulum episodes last 200 steps
    printed = capsys.readouterr().out
    assert "return        –" in printed and "nan" not in printed
    assert "(preset pendulum)" in printed


def test_tensorboard_events_read_back_by_tensorboard(tmp_path):
    read_events(tmp_path)  # skips without tensorboard
    out = tmp_path / "tb"
    assert main(["train-ppo", "--num-envs", "2", "--num-steps", "64", "--total-steps", "256", "--hidden-sizes", "8",
                 "--tensorboard", str(out)]) == 0
    events = read_events(out)
    scalars = events.Tags()["scalars"]
    for name in ("charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/learning_rate",
                 "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl",
                 "losses/clipfrac", "losses/explained_variance"):
        assert name in scalars, name
    assert [event.step for event in events.Scalars("losses/policy_loss")] == [128, 256]
    lengths = events.Scalars("charts/episodic_length")
    assert lengths and all(event.value >= 1 for event in lengths)
    assert '"hidden_sizes": [\n    8\n  ]' in logged_text(events, "config")


def test_run_log_maps_rlhf_names_and_writes_samples(tmp_path):
    read_events(tmp_path)  # skips without tensorboard
    from minippo.run_log import samples_markdown
    log = RunLog(str(tmp_path), {"algo": "ppo"})
    log.scalars(1, {"reward/mean": 0.5, "objective/kl_k1": np.float32(2.0), "policy/entropy": 1.0, "iteration": 1})
    log.text("samples", 1, samples_markdown([{"prompt": "Q: a|b A:", "response": "yes", "reward": 1.0}]))
    log.close()
    events = read_events(tmp_path)
    assert sorted(events.Tags()["scalars"]) == ["objective/kl", "objective/scores", "policy/entropy"]
    assert METRIC_NAMES["reward/mean"] == "objective/scores"
    assert "| Q: a\\|b A: | yes | +1.000 |" in logged_text(events, "samples")


def test_without_tensorboard_the_run_log_does_nothing_and_imports_nothing():
    import sys
    log = RunLog(None, {"a": 1})
    log.scalars(1, {"loss": 1.0})
    log.close()
    import subprocess  # importing the command line does not import tensorboardX
    code = "import sys, minippo.cli, minippo.run_log; print('tensorboardX' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_pretrain_and_rlhf_write_config_json_and_tensorboard(tmp_path, capsys):
    read_events(tmp_path)  # skips without tensorboard
    pretrained = tmp_path / "pretrain"
    assert main(["pretrain", "--out", str(pretrained), "--steps", "6", "--batch-size", "4", "--n-layer", "1",
                 "--n-embd", "16", "--n-head", "2", "--block-size", "48", "--samples", "0",
                 "--tensorboard", str(tmp_path / "tb_pretrain")]) == 0
    assert [event.step for event in read_events(tmp_path / "tb_pretrain").Scalars("losses/loss")] == list(range(1, 7))
    assert json.loads((pretrained / "config.json").read_text())["n_embd"] == 16

    out, again = tmp_path / "rlhf", tmp_path / "again"
    assert main(["rlhf", "--policy", str(pretrained / "model.npz"), "--reward", "length:5", "--iterations", "2",
                 "--batch-size", "4", "--minibatch-size", "2", "--max-new-tokens", "4", "--samples-every", "2",
                 "--out", str(out), "--tensorboard", str(tmp_path / "tb_rlhf")]) == 0
    logged = read_events(tmp_path / "tb_rlhf")
    assert {"objective/scores", "objective/kl", "objective/beta", "policy/entropy"} <= set(logged.Tags()["scalars"])
    assert [event.step for event in logged.Scalars("objective/kl")] == [1, 2]
    assert "| prompt | response | reward |" in logged_text(logged, "samples")
    assert main(["rlhf", "--policy", str(pretrained / "model.npz"), "--reward", "length:5", "--out", str(again),
                 "--config", str(out / "config.json")]) == 0  # the same run again, from its config.json
    capsys.readouterr()
    assert (again / "config.json").read_text() == (out / "config.json").read_text()
    assert without_times(again / "rlhf_log.csv") == without_times(out / "rlhf_log.csv")


def test_options_named_replaces_field_names_with_options_only():
    options = {"n_embd": "--n-embd", "n_head": "--n-head", "seed": "--seed", "max_new_tokens": "--max-new-tokens"}
    assert options_named("GPTConfig.n_embd (96) must be divisible by n_head (5)", options) == \
        "--n-embd (96) must be divisible by --n-head (5)"
    assert options_named("use max_new_tokens=4 or n_head=False, or n_head=True", options) == \
        "use --max-new-tokens=4 or --no-n-head, or --n-head"
    unchanged = "seed 3: runs/n_head.npz has n_heads, --max-new-tokens and max_new_tokens_x"
    assert options_named(unchanged, options) == unchanged


def test_refusals_name_the_option_the_user_typed_not_the_config_field(tmp_path, capsys):
    """n_head not dividing n_embd, max_new_tokens >= block_size: one line naming the options, before any work."""
    for command in ("pretrain", "grpo"):
        assert main([command, "--n-head", "5", "--out", str(tmp_path / command)]) == 2
        captured = capsys.readouterr()
        assert captured.err == f"minippo {command}: error: --n-embd (96) must be divisible by --n-head (5)\n"
        assert captured.out == ""
    policy = tmp_path / "pretrain" / "model.npz"
    assert main(["pretrain", "--out", str(policy.parent), "--steps", "1", "--batch-size", "2", "--n-layer", "1",
                 "--n-embd", "8", "--n-head", "2", "--block-size", "16", "--samples", "0"]) == 0
    capsys.readouterr()
    for argv in (["value", "--prompt", "Hi?"], ["rlhf", "--out", str(tmp_path / "rlhf")]):
        assert main([*argv, "--policy", str(policy), "--reward", "length:5", "--max-new-tokens", "16"]) == 2
        assert capsys.readouterr().err.splitlines()[-1] == (
            f"minippo {argv[0]}: error: --max-new-tokens (16) must be less than the policy's block_size (16), "
            "to leave room for a prompt")

"""DPO and its variants: the losses by hand, log 2 at initialisation, gradients through the GPT by central
differences, learning the shipped preferences, the configuration's checks and ``minippo dpo``."""
import copy
import csv
import dataclasses
import json
import math

import numpy as np
import pytest

from minippo.cli import main
from minippo.nn import GPT, GPTConfig
from minippo.nn.checkpoint import save_checkpoint
from minippo.pretrain import load_model
from minippo.rlhf.dpo import (
    DPO_LOSS_TYPES,
    DPOConfig,
    DPOTrainer,
    dpo_loss,
    hinge_loss,
    ipo_loss,
    robust_loss,
    sequence_logprobs,
    sigmoid_loss,
)
from minippo.text.corpus import load_preferences
from minippo.text.tokenizer import ByteTokenizer
from tests.gradcheck import assert_gradient_close, assert_nonzero, numerical_gradient
from tests.test_runs import assert_same_weights, run_interrupted


def tiny_policy(dtype=np.float64, seed=0, noise=0.0):
    """A 1-layer GPT on bytes; ``noise`` moves every parameter (gains off 1, biases off 0)."""
    model = GPT(GPTConfig(vocab_size=258, block_size=96, n_layer=1, n_head=2, n_embd=16, dtype=dtype), seed=seed)
    rng = np.random.default_rng(seed + 1)
    for value in model.params.values():
        value += (rng.standard_normal(value.shape) * noise).astype(dtype)
    return model


def shortest_pairs(count):
    """The ``count`` shipped training pairs with the shortest texts, so that checks stay fast."""
    pairs = load_preferences("train")
    return sorted(pairs, key=lambda pair: len(pair["prompt"] + pair["chosen"] + pair["rejected"]))[:count]


# -- the losses on hand-made margins --------------------------------------------------------------
def test_sigmoid_loss_is_log_2_at_zero_margin_and_plain_dpo_without_smoothing():
    loss, dmargins = sigmoid_loss(np.zeros(5), beta=0.1)
    assert loss == math.log(2.0)  # exactly: −log σ(0) = log(1 + e⁰)
    np.testing.assert_array_equal(dmargins, np.full(5, -0.1 * 0.5 / 5))  # −β σ(0) / n
    margins, beta = np.array([-3.0, -0.5, 0.0, 0.7, 12.0]), 0.4
    plain = np.mean(-np.log(1.0 / (1.0 + np.exp(-beta * margins))))
    assert sigmoid_loss(margins, beta, 0.0)[0] == pytest.approx(plain, rel=1e-14)
    for smoothing_zero in (sigmoid_loss(margins, beta, 0.0), robust_loss(margins, beta, 0.0)):
        assert smoothing_zero[0] == sigmoid_loss(margins, beta)[0]
        np.testing.assert_array_equal(smoothing_zero[1], sigmoid_loss(margins, beta)[1])


def test_label_smoothing_by_hand():
    """cDPO at h = 0 is still log 2, with gradient −β((1 − ε) − ε)/2; robust DPO at h = 0 is
    (1 − 2ε) log 2 / (1 − 2ε) = log 2 with gradient −β/2 / (1 − 2ε)."""
    beta, epsilon = 0.5, 0.25
    loss, dmargins = sigmoid_loss(np.zeros(1), beta, epsilon)
    assert loss == pytest.approx(math.log(2.0), rel=1e-15) and dmargins[0] == pytest.approx(-beta * 0.25, rel=1e-15)
    loss, dmargins = robust_loss(np.zeros(1), beta, epsilon)
    assert loss == pytest.approx(math.log(2.0), rel=1e-15) and dmargins[0] == pytest.approx(-beta, rel=1e-15)
    # far from 0 the smoothed loss grows again on the wrong side: ε log σ(−βh) ~ −ε βh
    assert sigmoid_loss(np.array([40.0]), 1.0, epsilon)[0] == pytest.approx(epsilon * 40.0, rel=1e-12)


def test_ipo_and_hinge_by_hand():
    """IPO pulls h to 1/(2β) = 1 (β = ½); the hinge is 0 once βh >= 1."""
    loss, dmargins = ipo_loss(np.array([0.0, 1.0, 3.0]), beta=0.5)
    assert loss == pytest.approx((1.0 + 0.0 + 4.0) / 3, rel=1e-15)
    np.testing.assert_allclose(dmargins, 2.0 * np.array([-1.0, 0.0, 2.0]) / 3, rtol=1e-15)
    loss, dmargins = hinge_loss(np.array([0.0, 2.0, 4.0, -2.0]), beta=0.5)
    assert loss == pytest.approx((1.0 + 0.0 + 0.0 + 2.0) / 4, rel=1e-15)
    np.testing.assert_array_equal(dmargins, -0.5 * np.array([1.0, 0.0, 0.0, 1.0]) / 4)


@pytest.mark.parametrize("loss_type, smoothing", [("sigmoid", 0.0), ("sigmoid", 0.2), ("robust", 0.2),
                                                  ("ipo", 0.0), ("hinge", 0.0)])
def test_each_loss_gradient_in_the_margin_matches_central_differences(loss_type, smoothing):
    margins = np.array([-2.3, -0.4, 0.3, 1.1, 5.0])
    _, analytic = dpo_loss(margins, 0.7, loss_type, smoothing)
    numerical = numerical_gradient(lambda: dpo_loss(margins, 0.7, loss_type, smoothing)[0], margins)
    assert_nonzero(numerical)
    assert_gradient_close(numerical, analytic, f"{loss_type} dL/dh")


# -- through the GPT --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_at_initialisation_the_loss_is_log_2_and_the_implicit_rewards_are_0(dtype):
    """The reference is the starting policy, so h = 0 on every pair; only the rounding of sums taken in
    differently padded batches separates them (1e-16 in float64, 1e-7 in float32)."""
    trainer = DPOTrainer(tiny_policy(dtype), ByteTokenizer(), shortest_pairs(24), DPOConfig(eval_batch_size=10))
    stats = trainer.pair_statistics(trainer.train_set, np.array([3, 17, 5, 22, 0, 9]))
    tolerance = 1e-12 if dtype == np.float64 else 1e-6
    assert stats["loss"] == pytest.approx(math.log(2.0), abs=tolerance)
    for key in ("reward_chosen", "reward_rejected", "reward_margin"):
        assert stats[key] == pytest.approx(0.0, abs=tolerance)
    assert trainer.evaluate(trainer.train_set)["loss"] == pytest.approx(math.log(2.0), abs=tolerance)


@pytest.mark.parametrize("loss_type, smoothing, beta", [("sigmoid", 0.0, 0.5), ("sigmoid", 0.2, 0.5),
                                                        ("robust", 0.2, 0.5), ("ipo", 0.0, 0.5),
                                                        ("hinge", 0.0, 0.8)])
def test_gradient_wrt_the_policy_parameters_matches_central_differences(loss_type, smoothing, beta):
    """float64, a reference other than the policy (so margins differ from 0 and from each other), every
    parameter moved off its initial value; a gain, biases, an attention projection and token embedding
    rows (tokens repeated across the batch) are checked entry by entry."""
    policy, reference = tiny_policy(noise=0.3), tiny_policy(seed=5, noise=0.3)
    config = DPOConfig(beta=beta, loss_type=loss_type, label_smoothing=smoothing)
    trainer = DPOTrainer(policy, ByteTokenizer(), shortest_pairs(3), config, reference=reference)
    index = np.array([0, 1, 2, 1])  # a pair twice: its gradient counts twice
    if loss_type == "hinge":  # both sides of the kink, none near it
        data = trainer.train_set
        ids, attention_mask, response_mask = data.batch(index)
        chosen, rejected = np.split(sequence_logprobs(policy, ids, attention_mask, response_mask)[0], 2)
        slack = 1.0 - beta * ((chosen - data.reference_chosen[index]) - (rejected - data.reference_rejected[index]))
        assert (slack > 1e-3).any() and (slack < -1e-3).any() and (np.abs(slack) > 1e-3).all(), slack
    policy.zero_grad()
    trainer.pair_statistics(trainer.train_set, index, backward=True)
    analytic = {name: gradient.copy() for name, gradient in policy.grads.items()}
    wte = policy.params["transformer.wte.weight"]
    checked = {name: policy.params[name] for name in ("transformer.ln_f.weight", "transformer.h.0.ln_1.bias",
                                                       "transformer.h.0.attn.c_proj.bias")}
    for token in (ord("Q"), ord(" "), ByteTokenizer().eos_id):
        checked[f"wte[{token}]"], analytic[f"wte[{token}]"] = wte[token], analytic["transformer.wte.weight"][token]
    for name, array in checked.items():
        numerical = numerical_gradient(lambda: trainer.pair_statistics(trainer.train_set, index)["loss"], array)
        assert_nonzero(numerical, name)
        assert_gradient_close(numerical, analytic[name], name)


def test_a_short_run_raises_held_out_preference_accuracy():
    """From a random GPT, 12 seeded steps on the shipped pairs: the held-out implicit-reward accuracy goes
    from chance to nearly all pairs, and the margin from 0 to clearly positive."""
    policy = GPT(GPTConfig(vocab_size=258, block_size=96, n_layer=1, n_head=2, n_embd=32, dtype=np.float32), seed=0)
    config = DPOConfig(steps=12, batch_size=16, learning_rate=3e-3, warmup_steps=2, log_every=6, seed=0)
    test_pairs = load_preferences("test")[::2]
    trainer = DPOTrainer(policy, ByteTokenizer(), load_preferences("train")[::3], config, test_pairs=test_pairs)
    before = trainer.evaluate(trainer.test_set)
    lines = []
    rows = trainer.train(log=lines.append)
    assert before["accuracy"] < 0.6 and before["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert rows[-1]["test_accuracy"] > 0.9 and rows[-1]["test_reward_margin"] > 0.2
    assert rows[-1]["test_loss"] < math.log(2.0) - 0.1
    assert [row["step"] for row in rows] == [6, 12] and len(lines) == 2 and "held-out" in lines[0]
    assert rows[-1]["train_reward_chosen"] > rows[-1]["train_reward_rejected"]


def test_same_seed_same_run():
    def run():
        trainer = DPOTrainer(tiny_policy(np.float32), ByteTokenizer(), shortest_pairs(20),
                             DPOConfig(steps=3, batch_size=4, learning_rate=1e-3, seed=7))
        trainer.train(log=lambda line: None)
        return trainer.policy.params["transformer.wte.weight"]
    np.testing.assert_array_equal(run(), run())


# -- checks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("settings, error, message", [
    ({"beta": 0.0}, ValueError, r"^beta must be > 0, got 0.0$"),
    ({"loss_type": "kto"}, ValueError, r"^loss_type must be one of \('sigmoid', 'robust', 'ipo', 'hinge'\)"),
    ({"label_smoothing": 0.5}, ValueError, r"^label_smoothing must be in \[0, 0.5\), got 0.5$"),
    ({"label_smoothing": 0.1, "loss_type": "ipo"}, ValueError,
     r"^label_smoothing applies to loss_type sigmoid or robust, not 'ipo'"),
    ({"steps": 1.5}, TypeError, r"^steps must be an integer >= 1"),
    ({"min_learning_rate": 1.0}, ValueError, r"^min_learning_rate must be in \[0, learning_rate\]"),
])
def test_config_errors_name_the_setting(settings, error, message):
    with pytest.raises(error, match=message):
        DPOConfig(**settings)


def test_every_config_field_has_a_one_line_help_and_a_check():
    for spec in dataclasses.fields(DPOConfig):
        assert spec.metadata["help"] and "\n" not in spec.metadata["help"], spec.name
        assert isinstance(spec.metadata["check"].rule, str), spec.name
    assert set(DPO_LOSS_TYPES) == {"sigmoid", "robust", "ipo", "hinge"}


def test_a_pair_longer_than_the_context_is_named():
    policy = GPT(GPTConfig(vocab_size=258, block_size=32, n_layer=1, n_head=2, n_embd=8), seed=0)
    pairs = [{"prompt": "Hi?", "chosen": "Yes.", "rejected": "No."},
             {"prompt": "Where is the bank?", "chosen": "Sure! It is on Main Street, next to the park.",
              "rejected": "No."}]
    with pytest.raises(ValueError, match=r"^preference pair 1 \('Q: Where is the bank\? A:'\) is \d+ tokens "
                                         r"with a response and EOS; the policy's context is 32$"):
        DPOTrainer(policy, ByteTokenizer(), pairs)
    with pytest.raises(ValueError, match="pairs is empty"):
        DPOTrainer(policy, ByteTokenizer(), [])


# -- the command ------------------------------------------------------------------------------------
def test_dpo_command_writes_a_checkpoint_that_rlhf_and_generate_load(tmp_path, capsys):
    policy = tiny_policy(np.float32)
    save_checkpoint(tmp_path / "base.npz", policy.params, policy.config.to_dict(), extra={"tokenizer": "byte"},
                    kind="gpt")
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(pair) for pair in shortest_pairs(12)), encoding="utf-8")
    out = tmp_path / "dpo"
    status = main(["dpo", "--policy", str(tmp_path / "base.npz"), "--data", str(data), "--steps", "4",
                   "--batch-size", "4", "--beta", "0.2", "--loss-type", "robust", "--label-smoothing", "0.1",
                   "--log-every", "2", "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    assert "dpo step    4/4" in printed and "held-out" in printed
    trained = load_model(out / "policy.npz")
    assert not np.array_equal(trained.params["transformer.wte.weight"], policy.params["transformer.wte.weight"])
    with open(out / "dpo_log.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["step"] for row in rows] == ["2", "4"] and "test_accuracy" in rows[0]
    assert main(["generate", "--policy", str(out / "policy.npz"), "--prompt", "Hi?", "--max-new-tokens",
                 "4"]) == 0
    status = main(["dpo", "--policy", str(tmp_path / "base.npz"), "--data", str(data), "--loss-type", "ipo",
                   "--label-smoothing", "0.1", "--out", str(out)])
    assert status == 2 and "--label-smoothing applies to --loss-type" in capsys.readouterr().err


def test_reference_logprobs_are_the_starting_policys_and_stay_fixed():
    policy = tiny_policy(np.float64, noise=0.1)
    start = copy.deepcopy(policy)
    trainer = DPOTrainer(policy, ByteTokenizer(), shortest_pairs(6), DPOConfig(steps=2, batch_size=3))
    reference = trainer.train_set.reference_chosen.copy()
    trainer.train(log=lambda line: None)
    np.testing.assert_array_equal(trainer.train_set.reference_chosen, reference)
    again = DPOTrainer(start, ByteTokenizer(), shortest_pairs(6), DPOConfig())
    np.testing.assert_array_equal(again.train_set.reference_chosen, reference)
    assert trainer.evaluate(trainer.train_set)["loss"] != pytest.approx(math.log(2.0), abs=1e-6)


def test_ctrl_c_during_dpo_saves_a_run_that_resumes_bit_identically(tmp_path, monkeypatch, capsys):
    policy = tiny_policy(np.float32, noise=0.05)
    save_checkpoint(tmp_path / "base.npz", policy.params, policy.config.to_dict(), extra={"tokenizer": "byte"},
                    kind="gpt")
    data = tmp_path / "pairs.jsonl"
    data.write_text("\n".join(json.dumps(pair) for pair in shortest_pairs(8)), encoding="utf-8")
    options = ["dpo", "--policy", str(tmp_path / "base.npz"), "--data", str(data), "--steps", "5", "--batch-size",
               "2", "--log-every", "2", "--learning-rate", "1e-2"]
    assert main(options + ["--out", str(tmp_path / "straight")]) == 0
    argv = options + ["--out", str(tmp_path / "run"), "--save-every", "2", "--keep", "1"]
    checkpoint = tmp_path / "run" / "policy.npz"
    run_interrupted(monkeypatch, capsys, argv, (DPOTrainer, "step"), 3, "step 3", f"--resume {checkpoint}")
    assert sorted(path.name for path in checkpoint.parent.glob("policy*")) == ["policy.npz", "policy.step2.npz"]
    assert main(argv) == 2  # the interrupted run's outputs are not overwritten by a new run
    assert f"{checkpoint} exists (from an earlier run)" in capsys.readouterr().err
    assert main(argv + ["--resume", str(checkpoint)]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert_same_weights(checkpoint, tmp_path / "straight" / "policy.npz")
    logs = [[{key: value for key, value in row.items() if key != "seconds"}
             for row in csv.DictReader((path / "dpo_log.csv").read_text(encoding="utf-8").splitlines())]
            for path in (tmp_path / "run", tmp_path / "straight")]
    assert logs[0] == logs[1] and [row["step"] for row in logs[0]] == ["2", "4", "5"]
    # a resumed run must start from the same policy, and a policy that holds no DPO run is no run to resume
    other = tiny_policy(np.float32, seed=1)
    save_checkpoint(tmp_path / "other.npz", other.params, other.config.to_dict(), kind="gpt")
    assert main([*argv[:2], str(tmp_path / "other.npz"), *argv[3:], "--resume", str(checkpoint)]) == 2
    assert "continues a run that started from another policy" in capsys.readouterr().err
    assert main(argv + ["--resume", str(tmp_path / "base.npz")]) == 2
    assert "holds a policy without a DPO run's state" in capsys.readouterr().err

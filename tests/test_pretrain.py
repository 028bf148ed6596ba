"""Pretraining: the loss falls, checkpoints resume bit-identically, the command line works."""
import json
from dataclasses import replace

import numpy as np
import pytest

from minippo import pretrain as pretrain_module
from minippo.cli import main
from minippo.commands.pretrain import print_samples
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import (
    IGNORE_INDEX,
    PretrainConfig,
    batch_loss,
    encode_documents,
    load_model,
    pretrain,
    sample_batch,
)
from minippo.text.corpus import load_corpus
from minippo.text.tokenizer import ByteTokenizer

TOKENIZER = ByteTokenizer()
TINY_OPTIONS = ["--batch-size", "4", "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "32"]


def tiny_model(seed=0):
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=96, n_layer=1, n_head=2, n_embd=32), seed=seed)


def quiet(line):
    pass


def test_documents_and_batches():
    documents = encode_documents(["ab", "", "abcdef"], TOKENIZER, block_size=3)
    # "ab"+EOS fits; "abcdef"+EOS (7 tokens) is cut into pieces of block_size + 1 = 4; a 1-token tail is dropped
    assert [d.tolist() for d in documents] == [[97, 98, 257], [97, 98, 99, 100], [101, 102, 257]]
    inputs, targets = sample_batch(documents, 5, TOKENIZER.pad_id, np.random.default_rng(0))
    assert inputs.shape == targets.shape == (5, 3)
    for row_inputs, row_targets in zip(inputs, targets):
        real = row_targets != IGNORE_INDEX
        np.testing.assert_array_equal(row_inputs[1:][real[1:]], row_targets[:-1][real[1:]])  # shifted by one
        assert (row_inputs[~real] == TOKENIZER.pad_id).all()
    with pytest.raises(ValueError, match="no line"):
        encode_documents(["", "   "], TOKENIZER, block_size=8)


def test_loss_falls_on_the_corpus():
    documents = encode_documents(load_corpus()[:400], TOKENIZER, 96)
    losses = pretrain(tiny_model(), documents, PretrainConfig(steps=60, batch_size=16, warmup_steps=5), log=quiet)
    assert np.mean(losses[:5]) > 4.5  # ≈ log(258) at the start
    assert np.mean(losses[-5:]) < 3.0


@pytest.mark.parametrize("weight", [1.0, 0.7])
def test_the_fused_loss_of_large_vocabularies_equals_the_textbook_one(monkeypatch, weight):
    """Above FUSED_LOSS_MIN_VOCAB the batch loss is GPT.loss (the LM head and cross-entropy fused, scaled by
    a rank's weight); in float64 its loss and gradients are those of logits -> cross_entropy."""
    documents = encode_documents(["ab" * (3 + i % 5) + " the end" * (i % 3) for i in range(12)], TOKENIZER, 24)
    inputs, targets = sample_batch(documents, 4, TOKENIZER.pad_id, np.random.default_rng(0))
    assert (targets == IGNORE_INDEX).any()  # padding to ignore
    results = []
    for threshold in (pretrain_module.FUSED_LOSS_MIN_VOCAB, 0):
        monkeypatch.setattr(pretrain_module, "FUSED_LOSS_MIN_VOCAB", threshold)
        model = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16,
                              dtype="float64"), seed=5)
        loss, dlogits = batch_loss(model, inputs, targets, weight)
        assert (dlogits is None) == (threshold == 0)
        model.backward(dlogits)
        results.append((loss, model.grads))
    (textbook_loss, textbook_grads), (fused_loss, fused_grads) = results
    assert fused_loss == pytest.approx(textbook_loss, rel=1e-12) and textbook_loss > 4.0 * weight
    for name, grad in textbook_grads.items():
        np.testing.assert_allclose(fused_grads[name], grad, rtol=1e-9, atol=1e-13, err_msg=name)


def progress(lines):
    """Step and loss of each progress line, e.g. "step     3/8  loss 5.4321" (tokens/s and ETA vary)."""
    return [line.rsplit("  ", 2)[0] for line in lines if line.startswith("step")]


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    documents = encode_documents(load_corpus()[:100], TOKENIZER, 96)
    config = PretrainConfig(steps=8, batch_size=4, warmup_steps=2, checkpoint_every=4, log_every=3)
    uninterrupted = tiny_model()
    straight_lines = []
    straight = pretrain(uninterrupted, documents, config, log=straight_lines.append)

    class Interrupted(Exception):
        pass

    first_lines = []

    def crash_at_step_six(line):  # step 6 ran, but the last checkpoint is the one of step 4
        if line.startswith("step     6/"):
            raise Interrupted
        first_lines.append(line)

    path = tmp_path / "model.npz"
    with pytest.raises(Interrupted):
        pretrain(tiny_model(), documents, config, checkpoint_path=str(path), log=crash_at_step_six)
    resumed = tiny_model(seed=123)  # a different init: everything must come from the checkpoint
    lines = []
    tail = pretrain(resumed, documents, config, checkpoint_path=str(path), resume=True, log=lines.append)
    assert lines[0].startswith("resumed from") and "step 4" in lines[0]
    assert tail == straight[4:]
    # The step-6 line averages steps 4..6, although step 4 ran before the checkpoint.
    assert progress(first_lines + lines) == progress(straight_lines)
    assert [line[:12] for line in progress(straight_lines)] == ["step     3/8", "step     6/8", "step     8/8"]
    for name, value in uninterrupted.params.items():
        np.testing.assert_array_equal(resumed.params[name], value)
    np.testing.assert_array_equal(load_model(path).params["transformer.wte.weight"],
                                  uninterrupted.params["transformer.wte.weight"])


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path):
    documents = encode_documents(load_corpus()[:50], TOKENIZER, 96)
    path = str(tmp_path / "model.npz")
    pretrain(tiny_model(), documents, PretrainConfig(steps=2, batch_size=2, warmup_steps=1), checkpoint_path=path,
             log=quiet)
    other = GPT(GPTConfig(vocab_size=258, block_size=96, n_layer=2, n_head=2, n_embd=32), seed=0)
    with pytest.raises(ValueError, match="config"):
        pretrain(other, documents, PretrainConfig(steps=4, batch_size=2, warmup_steps=1), checkpoint_path=path,
                 resume=True, log=quiet)


def test_resume_refuses_changed_settings_but_allows_more_steps(tmp_path):
    documents = encode_documents(load_corpus()[:50], TOKENIZER, 96)
    path = str(tmp_path / "model.npz")
    config = PretrainConfig(steps=2, batch_size=2, warmup_steps=1)
    pretrain(tiny_model(), documents, config, checkpoint_path=path, log=quiet)
    changed = PretrainConfig(steps=2, batch_size=3, warmup_steps=1, learning_rate=1e-3)
    with pytest.raises(ValueError, match="settings") as error:
        pretrain(tiny_model(), documents, changed, checkpoint_path=path, resume=True, log=quiet)
    assert "batch_size: checkpoint 2, now 3" in str(error.value)
    assert "learning_rate: checkpoint 0.003, now 0.001" in str(error.value)
    longer = PretrainConfig(steps=3, batch_size=2, warmup_steps=1, log_every=1, checkpoint_every=1)
    assert len(pretrain(tiny_model(), documents, longer, checkpoint_path=path, resume=True, log=quiet)) == 1
    # A checkpoint without the settings (not written by pretrain) is resumed without the check.
    state = load_checkpoint(path)
    assert state["step"] == 3 and "pretrain" in state["extra"]
    save_checkpoint(path, state["params"], state["config"], state["optimizer_state"], state["step"], state["rng"],
                    kind="gpt")
    changed.steps = 4
    assert len(pretrain(tiny_model(), documents, changed, checkpoint_path=path, resume=True, log=quiet)) == 1


def test_resume_refuses_a_checkpoint_of_weights_only(tmp_path, capsys):
    """`minippo rlhf` writes OUT/policy.npz with weights only; moved to model.npz it cannot be resumed."""
    path = tmp_path / "model.npz"
    model = tiny_model()
    save_checkpoint(path, model.params, model.config.to_dict(), extra={"tokenizer": "byte"}, kind="gpt")
    with pytest.raises(ValueError) as error:  # a pathlib path is shown as the plain path
        pretrain(tiny_model(), encode_documents(load_corpus()[:20], TOKENIZER, 96), PretrainConfig(steps=2),
                 checkpoint_path=path, resume=True, log=quiet)
    assert str(error.value).startswith(f"checkpoint {str(path)!r} has no optimizer or random-generator state")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n", encoding="utf-8")
    assert main(["pretrain", "--data", str(empty), "--out", str(tmp_path / "out"), *TINY_OPTIONS]) == 2
    assert capsys.readouterr().err == (f"minippo pretrain: error: {empty}: the training text has no line with at "
                                       f"least one token to predict\n")


def test_resume_refuses_other_documents(tmp_path):
    path = str(tmp_path / "model.npz")
    config = PretrainConfig(steps=2, batch_size=2, warmup_steps=1)
    corpus = load_corpus()[:50]
    pretrain(tiny_model(), encode_documents(corpus, TOKENIZER, 96), config, checkpoint_path=path, log=quiet)
    longer = PretrainConfig(steps=3, batch_size=2, warmup_steps=1)
    for other in (corpus[:49], corpus[:49] + ["a different last line"]):  # fewer documents; same count, new text
        with pytest.raises(ValueError, match="trained on other documents"):
            pretrain(tiny_model(), encode_documents(other, TOKENIZER, 96), longer, checkpoint_path=path, resume=True,
                     log=quiet)
    assert len(pretrain(tiny_model(), encode_documents(corpus, TOKENIZER, 96), longer, checkpoint_path=path,
                        resume=True, log=quiet)) == 1


def test_resume_at_the_last_step_trains_nothing(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text("hello world\n" * 10, encoding="utf-8")
    out = tmp_path / "run"
    argv = ["pretrain", "--data", str(data), "--out", str(out), "--steps", "3", "--samples", "0", *TINY_OPTIONS]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert main([*argv, "--resume", "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "nothing to train: the checkpoint is at step 3 and steps is 2" in printed
    assert "wrote" not in printed and not any(line.startswith("step") for line in printed.splitlines())


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_is_reported_without_parameter_names(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text("hello world\nminippo learns\n" * 20, encoding="utf-8")
    status = main(["pretrain", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "40", "--lr", "50",
                   "--samples", "0", *TINY_OPTIONS])
    assert status == 2
    error = capsys.readouterr().err
    assert error.startswith("minippo pretrain: error: ") and error.count("\n") == 1
    assert "lower the learning rate" in error and "transformer" not in error  # no list of parameter names


def test_print_samples_explains_when_the_prompts_fill_the_context():
    lines = []
    print_samples(tiny_model(), TOKENIZER, ["ab", "abc"], seed=0, log=lines.append)
    assert lines[0] == "samples:" and len(lines) == 3
    assert lines[1].startswith("  ab") and lines[2].startswith("  abc")
    lines.clear()
    print_samples(tiny_model(), TOKENIZER, ["a" * 96], seed=0, log=lines.append)
    assert lines == ["samples:", "no samples: the longest prompt fills the 96-token context"]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(steps=True), "steps must be an integer >= 1, got bool True"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(warmup_steps=-1), "warmup_steps must be an integer >= 0, got -1"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(seed=1.5), "seed must be an integer >= 0, got float 1.5"),
        (dict(learning_rate=float("inf")), "learning_rate must be a finite number, got inf"),
        (dict(learning_rate=float("nan")), "learning_rate must be a finite number, got nan"),
        (dict(learning_rate="0.1"), "learning_rate must be a finite number, got str '0.1'"),
        (dict(learning_rate=1e-4), r"min_learning_rate must be in \[0, learning_rate\]"),
        (dict(weight_decay=-0.1), "weight_decay must be >= 0, got -0.1"),
        (dict(max_grad_norm=0.0), "max_grad_norm must be > 0, got 0.0"),
    ],
)
def test_pretrain_config_rejects_bad_settings(settings, message):
    with pytest.raises((TypeError, ValueError), match=message) as raised:
        PretrainConfig(**settings)
    wrong_kind = any(f"got {kind}" in message for kind in ("bool", "float", "str"))
    assert raised.type is (TypeError if wrong_kind else ValueError)


def test_pretrain_config_accepts_numpy_numbers_and_stores_python_ones():
    config = PretrainConfig(steps=np.int64(5), learning_rate=np.float32(0.5), seed=np.uint8(3))
    assert (config.steps, config.learning_rate, config.seed) == (5, 0.5, 3)
    assert type(config.steps) is int and type(config.learning_rate) is float and type(config.seed) is int


def test_pretrain_command(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text("hello world\nminippo learns\n" * 20, encoding="utf-8")
    out = tmp_path / "run"
    status = main(["pretrain", "--data", str(data), "--out", str(out), "--steps", "20", "--batch-size", "4",
                   "--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block-size", "32", "--samples", "2"])
    assert status == 0
    printed = capsys.readouterr().out
    assert "step    20/20" in printed and "tokens/s" in printed and "ETA" in printed and "samples:" in printed
    assert (out / "model.npz").exists()
    assert main(["pretrain", "--data", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2
    assert "missing.txt" in capsys.readouterr().err


def test_pretrain_command_reports_bad_files_before_training(tmp_path, capsys):
    data = tmp_path / "text.txt"
    data.write_text("hello world\n" * 10, encoding="utf-8")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9\n")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("", encoding="utf-8")
    for bad, problem in [(["--data", ""], "No such file"),
                         (["--data", str(latin1)], f"{latin1}: not UTF-8 text"),
                         (["--data", str(tmp_path)], f"Is a directory: {str(tmp_path)!r}"),
                         (["--data", str(data), "--out", str(not_a_directory)],
                          f"{not_a_directory} is a file, not a directory")]:
        assert main(["pretrain", "--out", str(tmp_path / "run"), *bad, "--steps", "2", *TINY_OPTIONS]) == 2
        captured = capsys.readouterr()
        assert captured.err.startswith("minippo pretrain: error: ") and captured.err.count("\n") == 1
        assert problem in captured.err and "step" not in captured.out


@pytest.mark.parametrize("bad, problem", [(["--steps", "0"], "argument --steps: expected an integer >= 1, got '0'"),
                                          (["--seed", "-1"], "argument --seed: expected an integer >= 0, got '-1'"),
                                          (["--n-embd", "30", "--n-head", "4"], "--n-embd")])
def test_pretrain_command_rejects_bad_options(tmp_path, capsys, bad, problem):
    try:
        status = main(["pretrain", "--out", str(tmp_path), *bad])
    except SystemExit as exit:  # argparse refuses the option itself, with status 2
        status = exit.code
    assert status == 2
    assert problem in capsys.readouterr().err


def test_resume_reads_a_checkpoint_of_the_previous_format_with_the_old_setting_names(tmp_path):
    """Format 1 recorded no kind and called learning_rate, min_learning_rate, max_grad_norm lr, min_lr, grad_clip."""
    documents = encode_documents(load_corpus()[:50], TOKENIZER, 96)
    path = tmp_path / "model.npz"
    config = PretrainConfig(steps=2, batch_size=2, warmup_steps=1)
    pretrain(tiny_model(), documents, config, checkpoint_path=path, log=quiet)
    with np.load(path) as archive:
        contents = {key: archive[key] for key in archive.files}
    meta = json.loads(str(contents["meta"]))
    assert meta.pop("kind") == "gpt" and meta["format_version"] == 2
    meta["format_version"] = 1
    settings = meta["extra"]["pretrain"]
    for old, new in [("lr", "learning_rate"), ("min_lr", "min_learning_rate"), ("grad_clip", "max_grad_norm")]:
        settings[old] = settings.pop(new)
    np.savez(path, **{**contents, "meta": np.array(json.dumps(meta))})
    assert load_model(path).config == tiny_model().config
    with pytest.raises(ValueError, match="learning_rate: checkpoint 0.003, now 0.001"):
        pretrain(tiny_model(), documents, replace(config, steps=3, learning_rate=1e-3), checkpoint_path=path,
                 resume=True, log=quiet)
    assert len(pretrain(tiny_model(), documents, replace(config, steps=3), checkpoint_path=path, resume=True,
                        log=quiet)) == 1

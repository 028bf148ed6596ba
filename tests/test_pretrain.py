"""Pretraining: the loss falls, checkpoints resume bit-identically, the command line works."""
import numpy as np
import pytest

from minippo.cli import main
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import IGNORE_INDEX, PretrainConfig, encode_documents, load_model, pretrain, sample_batch
from minippo.text.corpus import load_corpus
from minippo.text.tokenizer import ByteTokenizer

TOKENIZER = ByteTokenizer()


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


def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path):
    documents = encode_documents(load_corpus()[:100], TOKENIZER, 96)
    config = PretrainConfig(steps=6, batch_size=4, warmup_steps=2, checkpoint_every=3, log_every=1)
    uninterrupted = tiny_model()
    straight = pretrain(uninterrupted, documents, config, log=quiet)

    class Interrupted(Exception):
        pass

    def crash_after_step_four(line):  # step 4 ran, but the last checkpoint is the one of step 3
        if line.startswith("step     4/"):
            raise Interrupted

    path = tmp_path / "model.npz"
    with pytest.raises(Interrupted):
        pretrain(tiny_model(), documents, config, checkpoint_path=str(path), log=crash_after_step_four)
    resumed = tiny_model(seed=123)  # a different init: everything must come from the checkpoint
    lines = []
    tail = pretrain(resumed, documents, config, checkpoint_path=str(path), resume=True, log=lines.append)
    assert lines[0].startswith("resumed from") and "step 3" in lines[0]
    assert tail == straight[3:]
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


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--n-embd", "30", "--n-head", "4"]])
def test_pretrain_command_rejects_bad_options(tmp_path, capsys, bad):
    assert main(["pretrain", "--out", str(tmp_path), *bad]) == 2
    assert "error" in capsys.readouterr().err

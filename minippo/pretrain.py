"""Pretraining: teach a GPT to continue text by minimising next-token cross-entropy.

    L(θ) = −(1/n) Σ_t log π_θ(x_{t+1} | x_1..x_t)

over documents (one per line of the training text, each ended by EOS).  Each batch row is one
document starting at position 0 -- the way the policy later sees a prompt -- right-padded, with the
targets of padding ignored.  Optimisation is AdamW with warmup + cosine learning rate and global
gradient-norm clipping.

Everything a run needs to continue is in one checkpoint (weights, optimizer moments, step, the
batch-sampling RNG, the tokenizer), so a resumed run is bit-identical to an uninterrupted one.

Under ``mpiexec -n N`` (``minippo.distributed``) every rank draws the same batch of documents and
trains on its N-th of the rows; its mean loss is weighted by its share of the batch's tokens, so that
the averaged gradient is the whole batch's and a run takes the same steps for every N (up to rounding),
and can be resumed with another N.
"""
import hashlib
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from minippo import distributed, runs
from minippo.checks import check_settings, integer, non_negative, positive, setting
from minippo.nn.categorical import cross_entropy
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.optim import AdamW, clip_grad_norm, cosine_schedule
from minippo.progress import eta_seconds, format_duration
from minippo.text.gpt2 import tokenizer_record
from minippo.text.tokenizer import ByteTokenizer

IGNORE_INDEX = -1
# Vocabularies above this size train through GPT.loss (the LM head and cross-entropy fused over chunks of
# rows, no (B, T, V) logits held); smaller ones through logits -> cross_entropy (see batch_loss).
FUSED_LOSS_MIN_VOCAB = 4096

# The settings a resumed run may change: the rest must match the checkpoint's.
RESUMABLE_CHANGES = ("steps", "log_every", "checkpoint_every")
# Settings renamed since checkpoints of format 1 recorded them (old name: new name).
RENAMED_SETTINGS = {"lr": "learning_rate", "min_lr": "min_learning_rate", "grad_clip": "max_grad_norm"}


@dataclass
class PretrainConfig:
    """Optimisation settings of :func:`pretrain` (model sizes live in ``GPTConfig``)."""

    steps: int = setting(500, "optimizer steps", integer(1))
    batch_size: int = setting(32, "documents per batch", integer(1))
    learning_rate: float = setting(3e-3, "peak learning rate (after warmup)", positive)
    min_learning_rate: float = setting(3e-4, "learning rate at the end of the cosine decay", non_negative)
    warmup_steps: int = setting(30, "steps of linear warmup", integer(0))
    weight_decay: float = setting(0.1, "AdamW weight decay of the matrices", non_negative)
    max_grad_norm: float = setting(1.0, "global gradient-norm clip", positive)
    seed: int = setting(0, "seed of the batch sampling", integer(0))
    log_every: int = setting(25, "steps per progress line", integer(1))
    checkpoint_every: int = setting(100, "steps per checkpoint", integer(1))

    def __post_init__(self):
        check_settings(self)
        if not self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"min_learning_rate must be in [0, learning_rate] = [0, {self.learning_rate}], "
                             f"got {self.min_learning_rate}")


def encode_documents(lines, tokenizer, block_size):
    """Token ids of each non-empty line followed by EOS; lines longer than block_size + 1 tokens are
    cut into consecutive pieces.  Returns a list of int64 arrays."""
    documents = []
    for line in lines:
        if not line.strip():
            continue
        ids = np.asarray(tokenizer.encode(line, add_eos=True), dtype=np.int64)
        documents.extend(ids[start:start + block_size + 1] for start in range(0, len(ids), block_size + 1))
    documents = [doc for doc in documents if len(doc) >= 2]
    if not documents:
        raise ValueError("the training text has no line with at least one token to predict")
    return documents


def documents_digest(documents):
    """SHA-256 of the documents' token ids and lengths, kept in checkpoints: a resumed run must train on
    the same documents as the run it continues."""
    digest = hashlib.sha256(np.array([len(doc) for doc in documents], dtype=np.int64).tobytes())
    for doc in documents:
        digest.update(np.ascontiguousarray(doc, dtype=np.int64).tobytes())
    return digest.hexdigest()


def sample_batch(documents, batch_size, pad_id, rng, rows=slice(None)):
    """Pick ``batch_size`` documents and keep the ``rows`` of them (a slice: all by default); return
    inputs (b, T) and targets (b, T) shifted by one, right-padded to the longest, with IGNORE_INDEX
    targets on padding."""
    chosen = [documents[i] for i in rng.integers(0, len(documents), batch_size)[rows]]
    T = max(len(doc) for doc in chosen) - 1
    inputs = np.full((len(chosen), T), pad_id, dtype=np.int64)
    targets = np.full((len(chosen), T), IGNORE_INDEX, dtype=np.int64)
    for row, doc in enumerate(chosen):
        inputs[row, :len(doc) - 1] = doc[:-1]
        targets[row, :len(doc) - 1] = doc[1:]
    return inputs, targets


def batch_loss(model, inputs, targets, weight):
    """``(loss, dlogits)``: ``weight`` × the mean cross-entropy of ``model`` on ``inputs`` over the targets
    that are not IGNORE_INDEX (``weight``: this rank's share of the batch, 1.0 in one process), and what
    ``model.backward`` takes for its gradient: the logits' gradient, or None where the model made it.
    Above FUSED_LOSS_MIN_VOCAB (GPT-2's 50,257) it is :meth:`GPT.loss`, which never holds the (B, T, V)
    logits and their gradient; small vocabularies (the demo's 258 bytes) keep the textbook
    logits -> cross_entropy, so the figures quoted for them do not move by a rounding."""
    if model.config.vocab_size > FUSED_LOSS_MIN_VOCAB:
        return model.loss(inputs, targets, ignore_index=IGNORE_INDEX, scale=weight), None
    loss, dlogits = cross_entropy(model.forward(inputs), targets, ignore_index=IGNORE_INDEX)
    if weight != 1.0:  # this rank's part of the whole batch's mean
        loss, dlogits = loss * weight, dlogits * dlogits.dtype.type(weight)
    return loss, dlogits


def check_same_settings(saved, config, checkpoint_path):
    """Raise ValueError listing every setting, other than RESUMABLE_CHANGES, that differs from ``saved``
    (whose names may be the old ones of RENAMED_SETTINGS)."""
    saved = {RENAMED_SETTINGS.get(name, name): value for name, value in saved.items()}
    runs.check_same_settings(saved, asdict(config), RESUMABLE_CHANGES, checkpoint_path)


def pretrain(model, documents, config, tokenizer=None, checkpoint_path=None, resume=False, log=print, stop=None):
    """Train ``model`` in place on ``documents`` (from :func:`encode_documents`); return the loss curve
    of the steps trained here.

    With ``checkpoint_path`` a checkpoint is written every ``config.checkpoint_every`` steps and at the
    end; with ``resume=True`` and an existing checkpoint, training continues from it exactly.  The
    checkpoint's settings must match ``config`` except for ``steps``, ``log_every`` and
    ``checkpoint_every``: a larger ``steps`` extends a run, and the cosine schedule then follows the new
    total (from the resumed step on, the learning rate is the longer schedule's, higher than where the
    shorter run ended).  A checkpoint already at ``steps`` or beyond trains nothing and returns [].
    ``log`` receives one progress line per ``config.log_every`` steps (step, mean loss since the last
    line, tokens/s, ETA).  ``stop(steps_done)``, when given, is asked after every step: when it is true,
    the checkpoint is written and training ends there (``minippo pretrain`` stops so on Ctrl-C).
    """
    tokenizer = tokenizer or ByteTokenizer()
    checkpoint_path = None if checkpoint_path is None else os.fspath(checkpoint_path)  # messages show a str
    world = distributed.world()
    rows_per_rank = world.share(config.batch_size, "batch_size")
    rows = slice(world.rank * rows_per_rank, (world.rank + 1) * rows_per_rank)
    log = world.on_root(log)
    world.broadcast_(model.params)
    optimizer = AdamW(model.params, model.grads, lr=config.learning_rate, betas=(0.9, 0.95),
                      weight_decay=config.weight_decay)
    rng = np.random.default_rng(config.seed)
    data_digest = documents_digest(documents)
    start_step = 0
    window = []  # losses since the last progress line; saved, so a resumed run logs the same means
    if resume and checkpoint_path and os.path.exists(checkpoint_path):
        state = load_checkpoint(checkpoint_path, kind="gpt")
        if state["config"] != model.config.to_dict():
            raise ValueError(f"checkpoint {checkpoint_path!r} holds a model with config {state['config']}, "
                             f"not {model.config.to_dict()}")
        if not state["optimizer_state"] or state["rng"] is None:
            raise ValueError(f"checkpoint {checkpoint_path!r} has no optimizer or random-generator state (it holds "
                             f"weights only, as `minippo rlhf` writes them), so it cannot be resumed")
        if "pretrain" in state["extra"]:
            check_same_settings(state["extra"]["pretrain"], config, checkpoint_path)
        if state["extra"].get("pretrain_data", data_digest) != data_digest:
            raise ValueError(f"checkpoint {checkpoint_path!r} was trained on other documents (the SHA-256 of "
                             f"their tokens differs); resume with the same data")
        model.load_state_dict(state["params"])
        optimizer.load_state_dict(state["optimizer_state"])
        start_step, rng = state["step"], state["rng"]
        window = state["extra"].get("pretrain_window", [])
        log(f"resumed from {checkpoint_path} at step {start_step}")
        if start_step >= config.steps:
            log(f"nothing to train: the checkpoint is at step {start_step} and steps is {config.steps}")
            return []

    def save(step):
        if not world.is_root:
            return
        extra = {"pretrain": asdict(config), "pretrain_data": data_digest, "pretrain_window": window,
                 "tokenizer": tokenizer_record(tokenizer)}
        save_checkpoint(checkpoint_path, model.params, model.config.to_dict(), optimizer.state_dict(),
                        step, rng, extra=extra, kind="gpt")

    losses = []
    tokens_seen, started = 0, time.perf_counter()
    for step in range(start_step, config.steps):
        inputs, targets = sample_batch(documents, config.batch_size, tokenizer.pad_id, rng, rows)
        weight, tokens = world.mean_weight(int((targets != IGNORE_INDEX).sum()))
        loss, dlogits = batch_loss(model, inputs, targets, weight)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss became {loss} at step {step}; lower the learning rate")
        model.zero_grad()
        model.backward(dlogits)
        loss = world.average_gradients(model.grads, {"loss": loss})["loss"]
        try:
            clip_grad_norm(model.grads, config.max_grad_norm)
        except FloatingPointError as error:
            raise FloatingPointError(f"gradients became non-finite at step {step}; "
                                     "lower the learning rate") from error
        optimizer.step(cosine_schedule(step, config.learning_rate, config.warmup_steps, config.steps,
                                       config.min_learning_rate))
        losses.append(loss)
        window.append(loss)
        tokens_seen += tokens
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            world.check_identical(model.params, f"step {done}")
            elapsed = time.perf_counter() - started
            rate = tokens_seen / elapsed
            eta = eta_seconds(elapsed, done - start_step, config.steps - start_step)
            log(f"step {done:5d}/{config.steps}  loss {np.mean(window):.4f}  "
                f"{rate:,.0f} tokens/s  ETA {format_duration(eta)}")
            window.clear()
        stopping = stop is not None and stop(done)
        if checkpoint_path and (done % config.checkpoint_every == 0 or done == config.steps or stopping):
            save(done)
        if stopping:
            break
    return losses


def load_model(path):
    """The GPT stored in a checkpoint of kind "gpt": written by :func:`pretrain`, ``minippo rlhf`` or the demo."""
    state = load_checkpoint(path, kind="gpt")
    if not isinstance(state["config"], dict):
        raise ValueError(f"checkpoint {str(path)!r} holds no model config")
    try:
        model = GPT(GPTConfig.from_dict(state["config"]), seed=0)
        model.load_state_dict(state["params"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {str(path)!r} does not hold a GPT: {error}") from error
    return model

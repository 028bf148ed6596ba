"""A learned reward model: a transformer with a score head, trained on human-style preference pairs.

For a prompt x with a preferred response y_c ("chosen") and a worse one y_r ("rejected"), the
Bradley–Terry model says P(y_c ≻ y_r) = σ(r(x, y_c) − r(x, y_r)), so training minimises

    L = −log σ(r_c − r_r),     ∂L/∂r_c = −σ(r_r − r_c),     ∂L/∂r_r = +σ(r_r − r_c)

over pairs in the JSONL format most RLHF tools use: ``{"prompt": ..., "chosen": ..., "rejected": ...}``.

The score r is read by a :class:`~minippo.nn.heads.ScoreHead` at the last token that is not padding --
the rule of Hugging Face's ``GPT2ForSequenceClassification`` -- of the text ``prompt + response + <EOS>``:
the prompt exactly as the policy saw it and the response exactly as the policy wrote it, which is what
the RLHF trainer passes to any reward.  For the shipped corpus that text is
``"Q: <question> A: <answer><EOS>"``: the policy is given ``"Q: <question> A:"`` and its response starts
with a space.  When the tokenizer's EOS is its padding token (GPT-2's ``<|endoftext|>``), that reader
would skip an EOS, so none is appended and the score is read at the last token of the response.
Preference pairs store the bare question and answers, so :func:`pair_texts` turns them into that same
text, with the reward model's prompt template (:class:`~minippo.text.template.Template`, recorded in its
checkpoint), before the model sees them.

After training, :meth:`RewardModel.normalize` sets a gain and bias so that responses sampled from the
reference policy (:func:`normalize_under_policy`) score mean 0 and standard deviation 1; a policy's
improvement is then measured in standard deviations of the reference policy's reward.
"""
import copy
import math
import time
import warnings

import numpy as np

from minippo import distributed
from minippo.checks import finite_number
from minippo.hf.gpt2 import load_reward_model, save_reward_model
from minippo.nn.checkpoint import load_checkpoint, save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.heads import ScoreHead
from minippo.nn.module import as_generator, prefixed, unprefixed
from minippo.nn.optim import AdamW, clip_grad_norm, cosine_schedule
from minippo.progress import eta_seconds, format_duration
from minippo.rlhf.rollout import generate_rollout
from minippo.runs import check_same_settings
from minippo.text.gpt2 import BYTE_RECORD, tokenizer_from_record, tokenizer_record
from minippo.text.template import DEFAULT_TEMPLATE, Template
from minippo.text.tokenizer import ByteTokenizer


class RewardModel:
    """A GPT trunk plus a score head; calling it scores responses: ``reward(prompts, responses) -> (B,)``.

    ``template`` (a :class:`~minippo.text.template.Template`) lays out the preference pairs it learns from;
    None means not known (a Hugging Face directory), and pairs then take the default template.
    """

    def __init__(self, trunk, tokenizer=None, seed=None, template=None):
        self.trunk = trunk
        self.head = ScoreHead(trunk.config.n_embd, trunk.config.dtype, init_std=0.0, seed=seed)
        self.tokenizer = tokenizer or ByteTokenizer()
        self.template = template
        self.gain, self.bias = 1.0, 0.0

    @classmethod
    def from_policy(cls, policy, tokenizer=None, seed=None, template=None):
        """A reward model whose trunk starts as a copy of a (pretrained) policy."""
        return cls(copy.deepcopy(policy), tokenizer, seed, template)

    # -- scoring ---------------------------------------------------------------------------------
    def encode(self, prompts, responses):
        """Token ids and mask (B, T) of the texts prompt + response + EOS, left-padded; without the EOS when
        it is the padding token, which the score reader skips (see the module docstring).

        A text longer than the trunk's context keeps its last block_size tokens, where the score is
        read, and a warning says so (texts that differ only in the cut-off beginning then score alike).
        Only the end of each text is encoded (:meth:`~minippo.text.tokenizer.Tokenizer.encode_end`) and
        cut before the batch is padded, so one very long text costs its last tokens, not a batch padded to
        its length.
        """
        add_eos = self.tokenizer.eos_id != self.tokenizer.pad_id
        block = self.trunk.config.block_size
        rows = [self.tokenizer.encode_end(prompt + response, block + 1, add_eos)  # one more: was it cut?
                for prompt, response in zip(prompts, responses)]
        if any(len(row) > block for row in rows):
            warnings.warn(f"RewardModel: some prompt + response texts are longer than the reward model's "
                          f"context ({block} tokens); only their last {block} tokens are scored", stacklevel=2)
        return self.tokenizer.pad_batch([row[-block:] for row in rows])  # keep the end, where the score is read

    def raw_scores(self, ids, mask):
        """r (B,) before normalisation; keeps what :meth:`backward` needs."""
        self.trunk.forward(ids, mask, compute_logits=False)
        return self.head.forward(self.trunk.hidden, mask)

    def backward(self, dscores):
        self.trunk.backward(dhidden=self.head.backward(dscores))

    def __call__(self, prompts, responses, batch_size=64):
        """Normalised scores gain · r + bias for each (prompt, response), as a float64 array (B,)."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length, "
                             f"got {len(prompts)} and {len(responses)}")
        scores = []
        for start in range(0, len(prompts), batch_size):
            ids, mask = self.encode(prompts[start:start + batch_size], responses[start:start + batch_size])
            scores.append(self.raw_scores(ids, mask).astype(np.float64))
        return self.gain * np.concatenate(scores) + self.bias

    def normalize(self, prompts, responses):
        """Set gain and bias so these (reference-policy) samples score mean 0, std 1; returns their raw scores."""
        self.gain, self.bias = 1.0, 0.0
        raw = self(prompts, responses)
        std = float(raw.std())
        if std == 0.0:
            raise ValueError("cannot normalise: every sample got the same score")
        self.gain, self.bias = 1.0 / std, -float(raw.mean()) / std
        return raw

    # -- parameters ------------------------------------------------------------------------------
    def named_parameters(self):
        """(params, grads) dicts over trunk and head, with ``trunk.`` / ``head.`` prefixes."""
        modules = {"trunk": self.trunk, "head": self.head}
        return prefixed(modules, "params"), prefixed(modules, "grads")

    def save(self, path, training=None):
        """Write the reward model to ``path``; ``training`` (from :func:`train_reward_model` when it is
        stopped: optimizer state, step, generator, settings) makes the checkpoint resumable."""
        params, _ = self.named_parameters()
        training = training or {}
        extra = {"gain": self.gain, "bias": self.bias, "tokenizer": tokenizer_record(self.tokenizer),
                 "template": (self.template or Template()).text}
        if training:
            extra["training"] = training["settings"]
        save_checkpoint(path, params, self.trunk.config.to_dict(), training.get("optimizer_state"),
                        training.get("step", 0), training.get("rng"), extra=extra, kind="reward_model")

    @classmethod
    def load(cls, path):
        state = load_checkpoint(path, kind="reward_model")
        extra = state["extra"]
        try:
            gain, bias = finite_number(extra.get("gain"), "gain"), finite_number(extra.get("bias"), "bias")
            tokenizer = tokenizer_from_record(extra.get("tokenizer", BYTE_RECORD), "tokenizer")
            template = Template(extra.get("template", DEFAULT_TEMPLATE))  # older checkpoints: the default
            model = cls(GPT(GPTConfig.from_dict(state["config"]), seed=0), tokenizer, template=template)
            model.trunk.load_state_dict(unprefixed(state["params"], "trunk"))
            model.head.load_state_dict(unprefixed(state["params"], "head"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{str(path)!r} is not a valid reward-model checkpoint: {error}") from error
        model.gain, model.bias = gain, bias
        return model

    @classmethod
    def from_pretrained(cls, path, dtype=np.float32, tokenizer=None, mmap_file=True):
        """A reward model from a ``GPT2ForSequenceClassification`` directory; see
        :func:`minippo.hf.gpt2.load_reward_model`."""
        return load_reward_model(path, dtype, tokenizer, mmap_file)

    def save_pretrained(self, path):
        """Write a ``GPT2ForSequenceClassification`` directory; see :func:`minippo.hf.gpt2.save_reward_model`."""
        save_reward_model(self, path)


def normalize_under_policy(reward_model, policy, tokenizer, prompts, max_new_tokens, temperature, seed):
    """Sample one response per prompt (formatted prompt texts) from ``policy``, the reference policy of the
    RL that follows, and :meth:`~RewardModel.normalize` the reward model on them: mean 0, std 1, so RL
    rewards and KL penalties have a known scale.  Returns the raw scores."""
    rollout = generate_rollout(policy, tokenizer, prompts, max_new_tokens, temperature, np.random.default_rng(seed))
    return reward_model.normalize(rollout.prompts, rollout.responses)


def bradley_terry_loss(chosen_scores, rejected_scores):
    """Mean −log σ(r_c − r_r) over pairs, its gradients, and the fraction of pairs ranked correctly."""
    margin = (chosen_scores - rejected_scores).astype(np.float64)
    loss = float(np.mean(np.logaddexp(0.0, -margin)))  # −log σ(m) = log(1 + e^{−m}), stable
    weight = 0.5 * (1.0 - np.tanh(0.5 * margin)) / len(margin)  # σ(−m) / n, stable
    dtype = chosen_scores.dtype
    return loss, (-weight).astype(dtype), weight.astype(dtype), float(np.mean(margin > 0))


def pair_texts(pairs, template=None):
    """``(prompts, chosen, rejected)`` of preference pairs as the policy sees and writes them, laid out by
    ``template`` (None: the default): by default the prompt as ``"Q: <prompt> A:"`` and each response after
    a space, so that prompt + response is the text ``"Q: <prompt> A: <response>"`` a rollout produces."""
    template = template or Template()
    prompts = [template.prompt_text(pair["prompt"]) for pair in pairs]
    return (prompts, [template.response_text(pair["chosen"]) for pair in pairs],
            [template.response_text(pair["rejected"]) for pair in pairs])


def preference_accuracy(model, pairs, batch_size=64):
    """Fraction of pairs where r(chosen) > r(rejected)."""
    prompts, chosen, rejected = pair_texts(pairs, model.template)
    return float(np.mean(model(prompts, chosen, batch_size) > model(prompts, rejected, batch_size)))


def resume_training(model, optimizer, path, settings):
    """``(step, rng)`` of the stopped training saved in ``path`` (by :func:`train_reward_model`), whose
    weights and optimizer state are loaded into ``model`` and ``optimizer``; ValueError if the checkpoint
    holds no training state or other ``settings`` (a dict; only ``steps`` may change)."""
    state = load_checkpoint(path, kind="reward_model")
    saved = state["extra"].get("training")
    if saved is None or state["rng"] is None:
        raise ValueError(f"checkpoint {str(path)!r} holds a trained reward model, not a stopped training run, "
                         f"so it cannot be resumed")
    check_same_settings(saved, settings, ("steps",), str(path))
    try:
        model.trunk.load_state_dict(unprefixed(state["params"], "trunk"))
        model.head.load_state_dict(unprefixed(state["params"], "head"))
        optimizer.load_state_dict(state["optimizer_state"])
    except ValueError as error:
        raise ValueError(f"checkpoint {str(path)!r}: {error}") from error
    return state["step"], state["rng"]


def train_reward_model(model, pairs, steps=150, batch_size=32, learning_rate=1e-3, weight_decay=0.0,
                       max_grad_norm=1.0, seed=0, log=print, log_every=25, stop=None, checkpoint_path=None,
                       resume_from=None):
    """Minimise the Bradley–Terry loss with AdamW on random mini-batches of pairs; returns the losses.

    Each step scores the chosen and rejected responses of ``batch_size`` pairs in one forward pass.
    Under ``mpiexec -n N`` (``minippo.distributed``) every rank draws the same pairs and scores its N-th
    of them; the gradients and the logged figures are averaged over the ranks.

    ``stop(steps_done)``, when given, is asked after every step; when it is true, training ends there and
    a resumable checkpoint is written to ``checkpoint_path``.  With ``resume_from`` (the path of such a
    checkpoint), training continues from it exactly (the same pairs and settings; ``steps`` may grow).
    """
    if not pairs:
        raise ValueError("pairs is empty; a reward model needs preference pairs to learn from")
    world = distributed.world()
    rows_per_rank = world.share(batch_size, "batch_size")
    rows = slice(world.rank * rows_per_rank, (world.rank + 1) * rows_per_rank)
    log = world.on_root(log)
    rng = as_generator(seed)
    params, grads = model.named_parameters()
    world.broadcast_(params)
    optimizer = AdamW(params, grads, lr=learning_rate, betas=(0.9, 0.95), weight_decay=weight_decay)
    settings = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate,
                "weight_decay": weight_decay, "max_grad_norm": max_grad_norm,
                "seed": seed if isinstance(seed, int) else None}
    start = 0
    if resume_from is not None:
        start, rng = resume_training(model, optimizer, resume_from, settings)
        log(f"resumed from {resume_from} at step {start}")
    losses, started = [], time.perf_counter()
    for step in range(start, steps):
        indices = rng.integers(0, len(pairs), batch_size)[rows]  # the same draw on every rank: its rows
        prompts, chosen, rejected = pair_texts([pairs[i] for i in indices], model.template)
        ids, mask = model.encode(prompts * 2, chosen + rejected)
        scores = model.raw_scores(ids, mask)  # (2·rows,): chosen then rejected
        loss, dchosen, drejected, accuracy = bradley_terry_loss(scores[:len(indices)], scores[len(indices):])
        if not math.isfinite(loss):
            raise FloatingPointError(f"reward-model loss became {loss} at step {step}; lower the learning rate")
        model.trunk.zero_grad()
        model.head.zero_grad()
        model.backward(np.concatenate([dchosen, drejected]))
        stats = world.average_gradients(grads, {"loss": loss, "accuracy": accuracy})
        loss, accuracy = stats["loss"], stats["accuracy"]
        clip_grad_norm(grads, max_grad_norm)
        optimizer.step(cosine_schedule(step, learning_rate, max(1, steps // 10), steps, learning_rate / 10))
        losses.append(loss)
        if (step + 1) % log_every == 0 or step + 1 == steps:
            world.check_identical(params, f"reward model step {step + 1}")
            elapsed = time.perf_counter() - started
            log(f"reward model step {step + 1:4d}/{steps}  loss {np.mean(losses[-log_every:]):.4f}  "
                f"batch accuracy {accuracy:.2f}  {format_duration(elapsed)}  "
                f"ETA {format_duration(eta_seconds(elapsed, step + 1 - start, steps - start))}")
        if stop is not None and stop(step + 1):
            if world.is_root:
                model.save(checkpoint_path, training={"optimizer_state": optimizer.state_dict(), "step": step + 1,
                                                      "rng": rng, "settings": settings})
            break
    return losses

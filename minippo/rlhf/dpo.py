"""Direct preference optimisation (DPO) and its variants: RLHF from preference pairs, with no reward model
and no sampling.

RLHF maximises E[r(x, y)] − β KL(π ‖ π_ref), whose optimum is π*(y|x) ∝ π_ref(y|x) exp(r(x, y) / β).  Read
backwards, a policy defines an implicit reward r̂(x, y) = β log π(y|x)/π_ref(y|x) (up to a term in x alone),
and putting r̂ into the Bradley–Terry model of the reward model (``minippo.rewards.reward_model``) cancels
that term.  For a pair (x, y⁺ ≻ y⁻), with the log-ratio margin

    h = (log π(y⁺|x) − log π_ref(y⁺|x)) − (log π(y⁻|x) − log π_ref(y⁻|x)),

each loss below is a function of h alone (its gradient is dL/dh times ∇h):

    sigmoid (DPO, Rafailov et al. 2023)     L = −log σ(βh)
      with label smoothing ε (cDPO)         L = −(1 − ε) log σ(βh) − ε log σ(−βh)
    robust (Chowdhury et al. 2024)          L = (−(1 − ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε)
    ipo (Azar et al. 2023)                  L = (h − 1/(2β))²
    hinge (SLiC, Zhao et al. 2023)          L = max(0, 1 − βh)

ε is the assumed share of pairs whose labels are flipped; ε = 0 gives plain DPO for both sigmoid and robust.
log π(y|x) = Σ_t log π(y_t | x, y_<t) is summed over the response tokens (EOS included; prompt tokens
masked) of the text the policy sees and writes, ``"Q: <prompt> A:"`` + ``" <response>"`` + EOS
(:func:`minippo.rewards.reward_model.pair_texts`; IPO here uses that sum too, where TRL averages).

The reference is the policy as it is when training starts (or a given model): its log-probabilities are
computed once per pair, before the first step, so it needs no copy, no gradients and no optimiser state.
At that start π = π_ref, so h = 0 and the sigmoid loss is log 2 for every pair.

A run logs the implicit rewards β(log π − log π_ref) of the chosen and the rejected responses, their
margin βh, and the accuracy (share of pairs with h > 0), on training batches and on held-out pairs.

:meth:`DPOTrainer.save` writes the policy as a GPT checkpoint (what ``minippo generate`` and ``rlhf
--policy`` read) that also holds the rest of the run -- AdamW's moments, the batch generator, the log
rows and the statistics since the last row -- so that :meth:`DPOTrainer.load_state`, in a trainer built
as the saved one was (the same settings, pairs and starting policy), continues it bit-identically.
"""
import math
import time
from dataclasses import asdict, dataclass

import numpy as np

from minippo.checks import (
    check_settings,
    integer,
    non_negative,
    number_rule,
    one_of,
    optional,
    positive,
    setting,
)
from minippo.nn.categorical import token_logprobs_backward, token_logprobs_forward
from minippo.nn.checkpoint import json_friendly, load_checkpoint, save_checkpoint, weights_digest
from minippo.nn.module import as_generator
from minippo.nn.optim import AdamW, clip_grad_norm, cosine_schedule
from minippo.rewards.reward_model import pair_texts
from minippo.runs import check_same_settings

DPO_LOSS_TYPES = ("sigmoid", "robust", "ipo", "hinge")
SMOOTHED_LOSS_TYPES = ("sigmoid", "robust")  # the loss types that read label_smoothing


def _log_sigmoid(x):
    """log σ(x) = −log(1 + e^{−x}), stable for any x."""
    return -np.logaddexp(0.0, -x)


def _sigmoid(x):
    """σ(x) = ½ (1 + tanh(x/2)), stable for any x."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def sigmoid_loss(margins, beta, label_smoothing=0.0):
    """DPO: mean over pairs of L = −(1 − ε) log σ(βh) − ε log σ(−βh) (ε = 0: −log σ(βh)), and dL/dh (n,)

        dL/dh = −β [(1 − ε) σ(−βh) − ε σ(βh)] / n.
    """
    scaled = beta * margins
    losses = -(1.0 - label_smoothing) * _log_sigmoid(scaled) - label_smoothing * _log_sigmoid(-scaled)
    dmargins = -beta * ((1.0 - label_smoothing) * _sigmoid(-scaled) - label_smoothing * _sigmoid(scaled))
    return float(np.mean(losses)), dmargins / len(margins)


def robust_loss(margins, beta, label_smoothing):
    """Robust DPO: mean of L = (−(1 − ε) log σ(βh) + ε log σ(−βh)) / (1 − 2ε), unbiased under a share ε of
    flipped labels, and dL/dh = −β [(1 − ε) σ(−βh) + ε σ(βh)] / ((1 − 2ε) n)."""
    scaled, unbias = beta * margins, 1.0 / (1.0 - 2.0 * label_smoothing)
    losses = (label_smoothing * _log_sigmoid(-scaled) - (1.0 - label_smoothing) * _log_sigmoid(scaled)) * unbias
    dmargins = -beta * unbias * ((1.0 - label_smoothing) * _sigmoid(-scaled) + label_smoothing * _sigmoid(scaled))
    return float(np.mean(losses)), dmargins / len(margins)


def ipo_loss(margins, beta):
    """IPO: mean of L = (h − 1/(2β))², which pulls every margin to 1/(2β) instead of ever further up, and
    dL/dh = 2 (h − 1/(2β)) / n."""
    error = margins - 1.0 / (2.0 * beta)
    return float(np.mean(error * error)), 2.0 * error / len(margins)


def hinge_loss(margins, beta):
    """SLiC's hinge: mean of L = max(0, 1 − βh), and dL/dh = −β [βh < 1] / n."""
    slack = 1.0 - beta * margins
    return float(np.mean(np.maximum(slack, 0.0))), -beta * (slack > 0) / len(margins)


def dpo_loss(margins, beta, loss_type="sigmoid", label_smoothing=0.0):
    """The ``loss_type`` loss of log-ratio margins h (n,): ``(mean loss, dL/dh (n,))``, in float64."""
    margins = np.asarray(margins, dtype=np.float64)
    if loss_type == "sigmoid":
        return sigmoid_loss(margins, beta, label_smoothing)
    if loss_type == "robust":
        return robust_loss(margins, beta, label_smoothing)
    if loss_type == "ipo":
        return ipo_loss(margins, beta)
    return hinge_loss(margins, beta)


@dataclass
class DPOConfig:
    """Settings of :class:`DPOTrainer` (TRL's names: ``beta``, ``loss_type``, ``label_smoothing``)."""

    beta: float = setting(0.1, "β: strength of the pull to the reference (the KL weight of RLHF)", positive)
    loss_type: str = setting("sigmoid", "loss of the log-ratio margin: sigmoid (DPO), robust, ipo or hinge",
                             one_of(*DPO_LOSS_TYPES))
    label_smoothing: float = setting(0.0, "ε, the assumed share of flipped labels (sigmoid: cDPO; robust)",
                                     number_rule("in [0, 0.5)", lambda number: 0 <= number < 0.5))
    steps: int = setting(200, "optimizer steps", integer(1))
    batch_size: int = setting(32, "preference pairs per step (drawn with replacement)", integer(1))
    learning_rate: float = setting(1e-4, "peak AdamW learning rate (after warmup)", positive)
    min_learning_rate: float = setting(1e-5, "learning rate at the end of the cosine decay", non_negative)
    warmup_steps: int = setting(10, "steps of linear warmup", integer(0))
    weight_decay: float = setting(0.0, "AdamW weight decay of the matrices", non_negative)
    max_grad_norm: float = setting(1.0, "global gradient-norm clip (None: off)", optional(positive))
    eval_batch_size: int = setting(64, "pairs per forward pass when scoring without gradients", integer(1))
    log_every: int = setting(20, "steps per log row (and held-out evaluation)", integer(1))
    seed: int = setting(0, "seed of the batch order", integer(0))

    def __post_init__(self):
        check_settings(self)
        if self.label_smoothing and self.loss_type not in SMOOTHED_LOSS_TYPES:
            raise ValueError(f"label_smoothing applies to loss_type {' or '.join(SMOOTHED_LOSS_TYPES)}, "
                             f"not {self.loss_type!r}; set it to 0")
        if not self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"min_learning_rate must be in [0, learning_rate] = [0, {self.learning_rate}], "
                             f"got {self.min_learning_rate}")


# -- log-probabilities of given responses -----------------------------------------------------------
def sequence_logprobs(model, ids, attention_mask, response_mask):
    """log π(y|x) = Σ_t log π(y_t | x, y_<t) over each row's response tokens (B,), and the log-softmax
    (B, T − 1, V) that :func:`sequence_logprobs_backward` needs.

    Rows are prompt + response + EOS, left-padded; ``response_mask`` (B, T) marks the response tokens.
    The logits at column t predict the token at column t + 1.
    """
    logits = model.forward(ids, attention_mask)  # (B, T, V)
    logprobs, log_probs_all = token_logprobs_forward(logits[:, :-1], ids[:, 1:])  # (B, T − 1): of tokens 1..T−1
    return np.where(response_mask[:, 1:], logprobs, 0.0).sum(axis=1), log_probs_all


def sequence_logprobs_backward(dsequence, ids, response_mask, log_probs_all):
    """dL/dlogits (B, T, V) from dL/dlog π(y|x) (B,): each response token's log-prob gets its row's share."""
    dlogprobs = response_mask[:, 1:] * dsequence[:, None]  # (B, T − 1)
    B, T = ids.shape
    dlogits = np.zeros((B, T, log_probs_all.shape[-1]), dtype=log_probs_all.dtype)
    dlogits[:, :-1] = token_logprobs_backward(dlogprobs.astype(log_probs_all.dtype), ids[:, 1:], log_probs_all)
    return dlogits


class PreferenceSet:
    """Preference pairs tokenized once, as the text the policy sees and writes, with the reference's
    log-probabilities of their chosen and rejected responses (computed here, once, without gradients)."""

    def __init__(self, pairs, tokenizer, reference, batch_size, template=None):
        if not pairs:
            raise ValueError("pairs is empty; DPO needs preference pairs to learn from")
        prompts, chosen, rejected = pair_texts(pairs, template)
        block = reference.config.block_size
        self.rows, self.response_lengths = [], []  # chosen rows 0..n−1, then rejected rows n..2n−1
        for responses in (chosen, rejected):
            for index, (prompt, response) in enumerate(zip(prompts, responses)):
                prompt_ids, response_ids = tokenizer.encode(prompt), tokenizer.encode(response, add_eos=True)
                if len(prompt_ids) + len(response_ids) > block:
                    length = len(prompt_ids) + len(response_ids)
                    raise ValueError(f"preference pair {index} ({prompt[:60]!r}) is {length} tokens with a response "
                                     f"and EOS; the policy's context is {block}")
                self.rows.append(prompt_ids + response_ids)
                self.response_lengths.append(len(response_ids))
        self.tokenizer = tokenizer
        reference_logprobs = np.concatenate([
            sequence_logprobs(reference, *self.batch(index, both=False))[0].astype(np.float64)
            for index in np.array_split(np.arange(len(self.rows)), math.ceil(len(self.rows) / batch_size))])
        self.reference_chosen, self.reference_rejected = np.split(reference_logprobs, 2)  # (n,), (n,)

    def __len__(self):
        return len(self.rows) // 2

    def batch(self, index, both=True):
        """``(ids, attention_mask, response_mask)`` (B, T) of rows ``index``; with ``both``, ``index`` names
        pairs and the batch holds their chosen rows, then their rejected rows."""
        index = np.concatenate([index, index + len(self)]) if both else index
        ids, attention_mask = self.tokenizer.pad_batch([self.rows[i] for i in index])  # left-padded
        lengths = np.array([self.response_lengths[i] for i in index])
        response_mask = np.arange(ids.shape[1]) >= ids.shape[1] - lengths[:, None]  # (B, T): the last tokens
        return ids, attention_mask, response_mask


class DPOTrainer:
    """Minimise a DPO loss (:func:`dpo_loss`) on preference pairs with AdamW; see the module docstring.

    ``reference`` defaults to the policy itself as it is now; only its log-probabilities are kept.
    ``template`` lays out the pairs (:func:`~minippo.rewards.reward_model.pair_texts`; None: the default).
    """

    def __init__(self, policy, tokenizer, pairs, config=None, test_pairs=None, reference=None, template=None):
        self.config = config = config or DPOConfig()
        self.policy = policy
        reference = policy if reference is None else reference
        self.train_set = PreferenceSet(pairs, tokenizer, reference, config.eval_batch_size, template)
        self.test_set = PreferenceSet(test_pairs, tokenizer, reference, config.eval_batch_size, template) \
            if test_pairs else None
        self.rng = as_generator(config.seed)
        self.optimizer = AdamW(policy.params, policy.grads, lr=config.learning_rate, betas=(0.9, 0.95),
                               weight_decay=config.weight_decay)
        self.steps_done = 0
        self.rows, self.recent = [], []  # the log rows, and the statistics of the steps since the last one
        self.seconds = 0.0  # spent training before this process (in the run a checkpoint continued)
        self.reference_digest = weights_digest(reference.params)

    def pair_statistics(self, data, index, backward=False):
        """Loss, implicit rewards β(log π − log π_ref) of chosen and rejected, margin and accuracy on pairs
        ``index`` of ``data``; with ``backward``, the loss's gradient is added to the policy's grads."""
        config = self.config
        ids, attention_mask, response_mask = data.batch(index)
        sequence, log_probs_all = sequence_logprobs(self.policy, ids, attention_mask, response_mask)
        chosen_ratios, rejected_ratios = np.split(sequence.astype(np.float64), 2)  # (n,) each
        chosen_ratios -= data.reference_chosen[index]
        rejected_ratios -= data.reference_rejected[index]
        loss, dmargins = dpo_loss(chosen_ratios - rejected_ratios, config.beta, config.loss_type,
                                  config.label_smoothing)
        if backward:
            dsequence = np.concatenate([dmargins, -dmargins])  # h = chosen ratio − rejected ratio
            self.policy.backward(sequence_logprobs_backward(dsequence, ids, response_mask, log_probs_all))
        return {"loss": loss, "reward_chosen": config.beta * float(chosen_ratios.mean()),
                "reward_rejected": config.beta * float(rejected_ratios.mean()),
                "reward_margin": config.beta * float((chosen_ratios - rejected_ratios).mean()),
                "accuracy": float(np.mean(chosen_ratios > rejected_ratios))}

    def evaluate(self, data):
        """:meth:`pair_statistics` over every pair of ``data``, in batches, averaged over pairs."""
        batches = np.array_split(np.arange(len(data)), math.ceil(len(data) / self.config.eval_batch_size))
        stats = [self.pair_statistics(data, index) for index in batches]
        weights = np.array([len(index) for index in batches]) / len(data)
        return {key: float(np.dot(weights, [s[key] for s in stats])) for key in stats[0]}

    def step(self):
        """One AdamW step on a random batch of training pairs; returns its statistics and the gradient norm."""
        config = self.config
        index = self.rng.integers(0, len(self.train_set), config.batch_size)
        self.policy.zero_grad()
        stats = self.pair_statistics(self.train_set, index, backward=True)
        if not math.isfinite(stats["loss"]):
            raise FloatingPointError(f"DPO loss became {stats['loss']} at step {self.steps_done}; "
                                     f"lower the learning rate")
        stats["grad_norm"] = clip_grad_norm(self.policy.grads, config.max_grad_norm)
        stats["learning_rate"] = cosine_schedule(self.steps_done, config.learning_rate, config.warmup_steps,
                                                 config.steps, config.min_learning_rate)
        self.optimizer.step(stats["learning_rate"])
        self.steps_done += 1
        return stats

    def logged_step(self, log=print):
        """One :meth:`step`; every ``log_every`` steps (and after the last) a row of training means
        (``train_*``) and held-out statistics (``test_*``, with test pairs) is logged and kept in ``rows``."""
        config, started = self.config, time.perf_counter()
        self.recent.append(self.step())
        if self.steps_done % config.log_every == 0 or self.steps_done == config.steps:
            row = {"step": self.steps_done,
                   **{f"train_{key}": float(np.mean([s[key] for s in self.recent])) for key in self.recent[0]}}
            if self.test_set is not None:
                row.update({f"test_{key}": value for key, value in self.evaluate(self.test_set).items()})
            row["seconds"] = self.seconds + time.perf_counter() - started
            self.rows.append(row)
            self.recent = []
            log(progress_line(row, config.steps))
        self.seconds += time.perf_counter() - started

    def train(self, log=print):
        """Run the steps left of ``config.steps`` (:meth:`logged_step`); returns the log rows."""
        while self.steps_done < self.config.steps:
            self.logged_step(log)
        return self.rows

    def save(self, path, extra=None):
        """Write the run to ``path`` (see the module docstring); ``extra`` is the caller's JSON-friendly dict
        (``minippo dpo`` keeps the tokenizer and the template there)."""
        run = {"config": json_friendly(asdict(self.config)), "reference": self.reference_digest, "rows": self.rows,
               "recent": self.recent, "seconds": self.seconds}
        save_checkpoint(path, self.policy.params, self.policy.config.to_dict(), self.optimizer.state_dict(),
                        self.steps_done, self.rng, extra={**(extra or {}), "dpo": run}, kind="gpt")

    def load_state(self, path):
        """Continue the run :meth:`save` wrote to ``path``; ValueError if this trainer was not built as that
        one was (other settings, another starting policy)."""
        path = str(path)
        state = load_checkpoint(path, kind="gpt")
        run = state["extra"].get("dpo")
        if not isinstance(run, dict) or "reference" not in run or state["rng"] is None:
            raise ValueError(f"checkpoint {path!r} holds a policy without a DPO run's state, so it cannot be "
                             f"resumed (start a new run from it with --policy)")
        check_same_settings(run["config"], json_friendly(asdict(self.config)), (), path)
        if run["reference"] != self.reference_digest:
            raise ValueError(f"checkpoint {path!r} continues a run that started from another policy; resume with "
                             f"the policy the run started from")
        try:
            self.policy.load_state_dict(state["params"])
            self.optimizer.load_state_dict(state["optimizer_state"])
        except ValueError as error:
            raise ValueError(f"checkpoint {path!r}: {error}") from error
        self.rng, self.steps_done = state["rng"], state["step"]
        self.rows, self.recent, self.seconds = run["rows"], run["recent"], run["seconds"]


def progress_line(row, total):
    """One line per log row: loss, implicit-reward margin and accuracy on training (and held-out) pairs."""
    line = (f"dpo step {row['step']:4d}/{total}  loss {row['train_loss']:.4f}  "
            f"margin {row['train_reward_margin']:+.3f}  accuracy {row['train_accuracy']:.2f}  ")
    if "test_loss" in row:
        line += (f"held-out loss {row['test_loss']:.4f}  margin {row['test_reward_margin']:+.3f}  "
                 f"accuracy {row['test_accuracy']:.2f}  ")
    return line + f"{row['seconds']:.0f}s"

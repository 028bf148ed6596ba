"""PPO (and REINFORCE, RLOO) for a language model, with a KL penalty to a frozen reference model.

One iteration:

1. **Rollout** -- sample a response to each prompt from π_T (KV-cache generation).
2. **Score** -- the judge (reward model or rule) gives each finished response a score s.
3. **Per-token reward** -- on every response token
       r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t)),   plus s at the last real token,
   where π_ref is a frozen copy of the starting policy; β is fixed or adapted so the KL tracks a target.
4. **Advantages** -- a critic V(s_t) (value head on the policy's trunk, or on its own copy) and GAE with
   γ = 1, λ = 0.95 over response tokens only; advantages whitened over response tokens only.
5. **Update** -- several epochs of minibatches of the clipped surrogate + clipped value loss, with
   global gradient-norm clipping.  Before the first update the recomputed log-probabilities equal the
   rollout's, so the ratio ρ = π/π_old is exactly 1.

REINFORCE uses the same rollouts with the sequence return R = s − β Σ_t KL_t minus a baseline (the
batch mean), and RLOO samples k responses per prompt and uses the mean return of the other k − 1 as
each one's baseline.  Both estimate ∇E[R] = E[(R − b) ∇ log π(τ)] with ∇ log π(τ) = Σ_t ∇ log π(a_t|s_t):
every response token of a minibatch carries its response's R − b, and the loss −mean((R − b) log π(a_t|s_t))
averages over the minibatch's response tokens.  One pass over the batch, one optimizer step per
minibatch (so only the first minibatch is exactly on-policy).
"""
import copy
import time
from dataclasses import dataclass

import numpy as np

from minippo.checks import check_integer_fields, check_seed, finite_number, is_real
from minippo.nn.categorical import entropy_backward, entropy_forward
from minippo.nn.heads import ValueHead
from minippo.nn.module import as_generator, prefixed
from minippo.nn.optim import AdamW, clip_grad_norm
from minippo.rewards.rules import check_rewards
from minippo.rl.advantages import generalized_advantages, whiten
from minippo.rl.kl import AdaptiveKLController, FixedKLController
from minippo.rl.losses import explained_variance, ppo_policy_loss, reinforce_loss, value_loss
from minippo.rlhf.rollout import (
    generate_rollout,
    response_logits_gradient,
    response_logprobs,
    response_logprobs_backward,
)

ALGORITHMS = ("ppo", "reinforce", "rloo")


@dataclass
class RLHFConfig:
    """Settings of :class:`RLHFTrainer`.  The defaults follow OpenAI's lm-human-preferences, Hugging Face's
    TRL and "The N+ Implementation Details of RLHF with PPO" (γ = 1, λ = 0.95, adaptive KL control)."""

    algo: str = "ppo"
    batch_size: int = 64          # prompts per iteration (RLOO: responses per iteration)
    max_new_tokens: int = 40
    temperature: float = 1.0
    lr: float = 1e-4
    update_epochs: int = 4
    minibatch_size: int = 16
    clip_coef: float = 0.2
    value_clip_coef: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    gamma: float = 1.0
    lam: float = 0.95
    max_grad_norm: float = 1.0
    init_kl_coef: float = 0.2
    kl_target: float = 6.0        # nats per response; None for a fixed β
    kl_horizon: float = 500.0     # in responses; lm-human-preferences uses 10,000 with far larger batches
    rloo_k: int = 4
    missing_eos_penalty: float = None  # subtracted from the score of a response that never emits EOS
    critic: str = "separate"      # "shared" (value head on the policy trunk) or "separate"
    seed: int = 0

    def __post_init__(self):
        if self.algo not in ALGORITHMS:
            raise ValueError(f"algo must be one of {ALGORITHMS}, got {self.algo!r}")
        if self.critic not in ("shared", "separate"):
            raise ValueError(f"critic must be 'shared' or 'separate', got {self.critic!r}")
        check_integer_fields(self, {"batch_size": 1, "max_new_tokens": 1, "update_epochs": 1, "minibatch_size": 1})
        check_seed(self.seed)  # None, an int >= 0 or a Generator, as the trainer's as_generator takes
        positive = ("temperature", "lr", "clip_coef", "value_clip_coef", "max_grad_norm", "kl_target", "kl_horizon")
        non_negative = ("vf_coef", "ent_coef", "init_kl_coef")
        fractions = ("gamma", "lam")
        # None switches these off: no value clipping, no gradient clipping, a fixed β, no EOS penalty.
        optional = ("value_clip_coef", "max_grad_norm", "kl_target", "missing_eos_penalty")
        for name in (*positive, *non_negative, *fractions, "missing_eos_penalty"):
            value = getattr(self, name)
            if value is None and name in optional:
                continue
            if name in optional and not is_real(value):
                raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
            number = finite_number(value, name)  # a float; the messages show the value as given
            if name in positive and not number > 0:
                raise ValueError(f"{name} must be > 0, got {value}")
            if name in non_negative and not number >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            if name in fractions and not 0 <= number <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
            setattr(self, name, number)
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size "
                             f"({self.minibatch_size})")
        if self.algo == "reinforce" and self.batch_size == 1:  # the baseline, the batch mean, is R itself
            raise ValueError("reinforce needs batch_size >= 2: its baseline is the batch's mean return, so one "
                             "response would get advantage 0 and teach nothing")
        if self.algo == "rloo":  # rloo_k is only read by RLOO
            check_integer_fields(self, {"rloo_k": 2})
            if self.batch_size % self.rloo_k:
                raise ValueError(f"rloo needs rloo_k dividing batch_size, got rloo_k={self.rloo_k} and "
                                 f"batch_size={self.batch_size}")


class Critic:
    """V(s_t) for every response position: a value head on a trunk (the policy's own, or a copy)."""

    def __init__(self, trunk, shared, value_head):
        self.trunk, self.shared, self.head = trunk, shared, value_head

    def values(self, rollout, run_trunk=True):
        """(B, T_response) values of the states before each response token."""
        if run_trunk:
            self.trunk.forward(rollout.tokens, rollout.attention_mask, compute_logits=False)
        values = self.head.forward(self.trunk.hidden)  # (B, T)
        return values[:, rollout.prompt_length - 1:-1]

    def hidden_gradient(self, dvalues, rollout):
        """dL/dhidden (B, T, C) from dL/dV over the response positions."""
        B, T = rollout.tokens.shape
        dfull = np.zeros((B, T), dtype=dvalues.dtype)
        dfull[:, rollout.prompt_length - 1:-1] = dvalues
        return self.head.backward(dfull)


def critic_from_reward_model(reward_model):
    """(trunk, value head) copies of a reward model, to start the critic from what it knows of the reward:
    its score head read at every position is an initial V(s_t)."""
    head = ValueHead(reward_model.trunk.config.n_embd, reward_model.trunk.config.dtype)
    head.load_state_dict(reward_model.head.state_dict())
    return copy.deepcopy(reward_model.trunk), head


class RLHFTrainer:
    """Runs :meth:`iteration` on batches of prompts; see the module docstring for the algorithm."""

    def __init__(self, policy, reward, tokenizer, config=None, critic_trunk=None, value_head=None):
        """``critic_trunk`` and ``value_head`` initialise a separate critic (default: a copy of the policy
        and a zero value head; :func:`critic_from_reward_model` starts it from the reward model instead).
        REINFORCE and RLOO need no critic."""
        self.config = config = config or RLHFConfig()
        self.policy, self.reward, self.tokenizer = policy, reward, tokenizer
        self.reference = copy.deepcopy(policy)  # frozen π_ref
        self.rng = as_generator(config.seed)
        modules = {"policy": policy}
        self.critic = None
        if config.algo == "ppo":
            head = value_head or ValueHead(policy.config.n_embd, policy.config.dtype, init_std=0.0)
            if config.critic == "shared":
                self.critic = Critic(policy, True, head)
            else:
                self.critic = Critic(copy.deepcopy(policy) if critic_trunk is None else critic_trunk, False, head)
                modules["critic"] = self.critic.trunk
            modules["value_head"] = head
            if head.params["weight"].shape[0] != self.critic.trunk.config.n_embd:
                raise ValueError(f"value_head reads {head.params['weight'].shape[0]} features, the critic's trunk "
                                 f"gives {self.critic.trunk.config.n_embd} (n_embd)")
        for name, argument in (("critic", "critic_trunk"), ("value_head", "value_head")):
            dtypes = {value.dtype for value in modules[name].params.values()} if name in modules else set()
            if dtypes - {policy.config.dtype}:
                raise TypeError(f"{argument} must have the policy's dtype {policy.config.dtype}, "
                                f"got {sorted(str(dtype) for dtype in dtypes)}")
        self.params, self.grads = prefixed(modules, "params"), prefixed(modules, "grads")
        self.optimizer = AdamW(self.params, self.grads, lr=config.lr, betas=(0.9, 0.95), eps=1e-5)
        self.kl_controller = (FixedKLController(config.init_kl_coef) if config.kl_target is None else
                              AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon))

    def _zero_grad(self):
        for gradient in self.grads.values():
            gradient.fill(0.0)

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(self, prompts):
        """One rollout + update on ``prompts`` (formatted prompt texts); returns a dict of statistics."""
        config = self.config
        if config.algo == "rloo":
            prompts = [p for p in prompts for _ in range(config.rloo_k)]
        timings = {}
        started = time.perf_counter()
        rollout = generate_rollout(self.policy, self.tokenizer, prompts, config.max_new_tokens,
                                   config.temperature, self.rng)
        timings["generate"] = time.perf_counter() - started

        started = time.perf_counter()
        scores = check_rewards(self.reward(rollout.prompts, rollout.responses), rollout.responses)
        if config.missing_eos_penalty is not None:
            scores = scores - config.missing_eos_penalty * ~rollout.ended_with(self.tokenizer.eos_id)
        timings["score"] = time.perf_counter() - started

        started = time.perf_counter()
        batch = self._score_tokens(rollout, scores)
        timings["forward"] = time.perf_counter() - started

        started = time.perf_counter()
        if config.algo == "ppo":
            stats = self._ppo_update(rollout, batch)
        else:
            stats = self._reinforce_update(rollout, batch)
        timings["train"] = time.perf_counter() - started

        self.kl_controller.update(batch["kl_per_response"].mean(), len(rollout))
        lengths = rollout.response_mask.sum(axis=1)
        return {
            "score": float(scores.mean()),
            "kl": float(batch["kl_per_response"].mean()),
            "kl_nonneg": float(batch["kl_nonneg_per_response"].mean()),
            "beta": self.kl_controller.beta,
            "response_length": float(lengths.mean()),
            **stats,
            **{f"seconds_{name}": value for name, value in timings.items()},
        }

    def _minibatches(self, size, shuffle):
        order = self.rng.permutation(size) if shuffle else np.arange(size)
        step = self.config.minibatch_size
        return [order[i:i + step] for i in range(0, size, step)]

    def _score_tokens(self, rollout, scores):
        """Old and reference log-probabilities, values, per-token rewards and KL of a rollout.

        Log-probabilities are recomputed by the same forward pass, on the same minibatches, as the
        first update epoch, so the first ratio is exactly 1.
        """
        config = self.config
        mask = rollout.response_mask
        old_logprobs = np.zeros(mask.shape, dtype=self.policy.config.dtype)
        ref_logprobs = np.zeros_like(old_logprobs)
        values = np.zeros_like(old_logprobs)
        for index in self._minibatches(len(rollout), shuffle=False):
            part = rollout.rows(index)
            old_logprobs[index] = response_logprobs(self.policy, part, config.temperature)[0]
            ref_logprobs[index] = response_logprobs(self.reference, part, config.temperature)[0]
            if config.algo == "ppo":
                values[index] = self.critic.values(part, run_trunk=not self.critic.shared)
        log_ratio = np.where(mask, old_logprobs - ref_logprobs, 0.0)  # log π − log π_ref per token
        beta = self.kl_controller.beta
        rewards = -beta * log_ratio
        rows = np.arange(len(rollout))
        rewards[rows, rollout.last_token_index] += scores
        ratio_ref = np.exp(-log_ratio)  # π_ref / π; (ρ − 1) − log ρ ≥ 0 estimates KL without sign noise
        return {
            "old_logprobs": old_logprobs, "values": values, "rewards": rewards.astype(old_logprobs.dtype),
            "scores": scores,
            "kl_per_response": log_ratio.sum(axis=1),
            "kl_nonneg_per_response": np.where(mask, (ratio_ref - 1.0) + log_ratio, 0.0).sum(axis=1),
        }

    def _ppo_update(self, rollout, batch):
        config = self.config
        mask = rollout.response_mask
        values = batch["values"]
        # GAE over response tokens (time-major): the state after the last token has value 0
        next_values = np.concatenate([values[:, 1:], np.zeros_like(values[:, :1])], axis=1)
        continues = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1).astype(values.dtype)
        advantages, returns = generalized_advantages(
            batch["rewards"].T, values.T, next_values.T, continues.T, continues.T, config.gamma, config.lam)
        advantages, returns = advantages.T, returns.T
        advantages = whiten(advantages, mask)
        history = []
        for epoch in range(config.update_epochs):
            for index in self._minibatches(len(rollout), shuffle=epoch > 0):
                history.append(self._ppo_minibatch(rollout.rows(index), batch["old_logprobs"][index],
                                                   advantages[index], returns[index], values[index]))
        stats = {key: float(np.mean([h[key] for h in history])) for key in history[0] if key != "ratio_max_error"}
        stats["first_ratio_max_error"] = history[0]["ratio_max_error"]  # 0: the first ratio is exactly 1
        stats["explained_variance"] = explained_variance(values, returns, mask)
        return stats

    def _ppo_minibatch(self, part, old_logprobs, advantages, returns, old_values):
        config = self.config
        mask = part.response_mask
        self._zero_grad()
        logprobs, log_probs_all = response_logprobs(self.policy, part, config.temperature)
        policy = ppo_policy_loss(logprobs, old_logprobs, advantages, config.clip_coef, mask)
        dlogits = response_logprobs_backward(policy.dlogprobs, part, log_probs_all, config.temperature)
        entropy = entropy_forward(log_probs_all)
        if config.ent_coef:
            weights = (mask / mask.sum()).astype(entropy.dtype) * -config.ent_coef
            dlogits += response_logits_gradient(entropy_backward(weights, log_probs_all, entropy),
                                                part, config.temperature, log_probs_all.shape[-1])
        new_values = self.critic.values(part, run_trunk=not self.critic.shared)
        vloss, dvalues = value_loss(new_values, old_values, returns, config.value_clip_coef, mask)
        dhidden = self.critic.hidden_gradient(dvalues * config.vf_coef, part)
        if self.critic.shared:
            self.policy.backward(dlogits, dhidden)
        else:
            self.policy.backward(dlogits)
            self.critic.trunk.backward(dhidden=dhidden)
        grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
        self.optimizer.step()
        ratio = np.exp(logprobs - old_logprobs)
        return {"policy_loss": policy.loss, "value_loss": vloss, "entropy": float(entropy[mask].mean()),
                "approx_kl": policy.approx_kl, "clipfrac": policy.clipfrac, "grad_norm": grad_norm,
                "ratio_max_error": float(np.abs(ratio - 1.0)[mask].max())}

    def _reinforce_update(self, rollout, batch):
        config = self.config
        mask = rollout.response_mask
        returns = batch["rewards"].sum(axis=1).astype(np.float64)  # R = s − β Σ_t KL_t
        if config.algo == "rloo":
            groups = returns.reshape(-1, config.rloo_k)
            baseline = (groups.sum(axis=1, keepdims=True) - groups) / (config.rloo_k - 1)
            baseline = baseline.reshape(-1)
        else:
            baseline = np.full_like(returns, returns.mean())
        advantages = np.repeat((returns - baseline)[:, None], mask.shape[1], axis=1).astype(batch["rewards"].dtype)
        history = []
        for index in self._minibatches(len(rollout), shuffle=True):
            part = rollout.rows(index)
            self._zero_grad()
            logprobs, log_probs_all = response_logprobs(self.policy, part, config.temperature)
            loss, dlogprobs = reinforce_loss(logprobs, advantages[index], part.response_mask)
            self.policy.backward(response_logprobs_backward(dlogprobs, part, log_probs_all, config.temperature))
            grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
            self.optimizer.step()
            history.append({"policy_loss": loss, "grad_norm": grad_norm,
                            "entropy": float(entropy_forward(log_probs_all)[part.response_mask].mean())})
        return {key: float(np.mean([h[key] for h in history])) for key in history[0]}

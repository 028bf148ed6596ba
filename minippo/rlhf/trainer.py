"""PPO (and REINFORCE, RLOO) for a language model, with a KL penalty to a frozen reference model.

One iteration:

1. **Rollout** -- sample a response to each prompt from π_T (KV-cache generation).
2. **Score** -- the judge (reward model or rule) gives each finished response a score s.
3. **Per-token reward** (``minippo.rl.kl.kl_penalty_rewards``) -- on every response token
       r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t)),   plus s at the last real token,
   where π_ref is a frozen copy of the starting policy; β is fixed or adapted so the KL tracks a target.
   (``kl_estimator`` "k2" or "k3" replaces log π − log π_ref by another per-token estimate of the KL.)
4. **Advantages** -- a critic V(s_t) (value head on the policy's trunk, or on its own copy) and GAE with
   γ = 1, λ = 0.95 over response tokens only, on the batch-major (B, T) arrays
   (``generalized_advantages(..., time_axis=1)``); advantages whitened over response tokens only.
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

from minippo import distributed
from minippo.checks import (
    check_seed,
    check_settings,
    finite,
    flag,
    fraction,
    integer,
    integer_at_least,
    non_negative,
    one_of,
    optional,
    positive,
    setting,
)
from minippo.nn.categorical import entropy_backward, entropy_forward
from minippo.nn.heads import ValueHead
from minippo.nn.module import as_generator, prefixed
from minippo.nn.optim import AdamW, clip_grad_norm
from minippo.rewards.rules import check_rewards
from minippo.rl.advantages import generalized_advantages, whiten
from minippo.rl.kl import (
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    kl_estimate,
    kl_penalty_rewards,
)
from minippo.rl.losses import (
    explained_variance,
    ppo_policy_loss,
    reinforce_loss,
    value_loss,
)
from minippo.rlhf.rollout import (
    generate_rollout,
    response_logits_gradient,
    response_logprobs,
    response_logprobs_backward,
)

RLHF_ALGORITHMS = ("ppo", "reinforce", "rloo")


@dataclass
class RLHFConfig:
    """Settings of :class:`RLHFTrainer`.  The defaults follow OpenAI's lm-human-preferences, Hugging Face's
    TRL and "The N+ Implementation Details of RLHF with PPO" (γ = 1, λ = 0.95, adaptive KL control)."""

    algo: str = setting("ppo", "algorithm", one_of(*RLHF_ALGORITHMS))
    batch_size: int = setting(64, "prompts per iteration (RLOO: responses per iteration)", integer(1))
    max_new_tokens: int = setting(40, "response length limit, in tokens", integer(1))
    temperature: float = setting(1.0, "sampling temperature (divides the logits in every forward pass)", positive)
    learning_rate: float = setting(1e-4, "AdamW learning rate", positive)
    update_epochs: int = setting(4, "PPO passes over each batch", integer(1))
    minibatch_size: int = setting(16, "responses per gradient step; must divide batch_size", integer(1))
    clip_coef: float = setting(0.2, "ε of the clipped surrogate (and of the value clipping)", positive)
    clip_vloss: bool = setting(True, "clip the value loss around the old values", flag)
    vf_coef: float = setting(0.5, "weight of the value loss", non_negative)
    ent_coef: float = setting(0.0, "weight of the entropy bonus", non_negative)
    gamma: float = setting(1.0, "discount factor γ over response tokens", fraction)
    gae_lambda: float = setting(0.95, "λ of generalised advantage estimation", fraction)
    max_grad_norm: float = setting(1.0, "global gradient-norm clip (None: off)", optional(positive))
    init_kl_coef: float = setting(0.2, "initial β of the KL penalty", non_negative)
    kl_target: float = setting(6.0, "adaptive-KL target, nats per response (None: β stays fixed)",
                               optional(positive))
    kl_horizon: float = setting(500.0, "adaptive-KL horizon, in responses (lm-human-preferences: 10,000 with "
                                "far larger batches)", positive)
    kl_estimator: str = setting("k1", "per-token KL estimator in the reward: k1, k2 or k3 (minippo.rl.kl)",
                                one_of(*KL_ESTIMATORS))
    rloo_k: int = setting(4, "RLOO only: responses per prompt (>= 2, dividing batch_size)", integer(1))
    missing_eos_penalty: float = setting(None, "subtracted from the score of a response that never emits EOS "
                                         "(None: off)", optional(finite))
    critic: str = setting("separate", "critic trunk: the policy's own (shared) or a copy (separate)",
                          one_of("shared", "separate"))
    seed: int = setting(0, "seed of the sampling and the minibatch order (or a numpy Generator)", check_seed)

    def __post_init__(self):
        check_settings(self)
        if self.batch_size % self.minibatch_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of minibatch_size "
                             f"({self.minibatch_size})")
        if self.algo == "reinforce" and self.batch_size == 1:  # the baseline, the batch mean, is R itself
            raise ValueError("reinforce needs batch_size >= 2: its baseline is the batch's mean return, so one "
                             "response would get advantage 0 and teach nothing")
        if self.algo == "rloo":  # rloo_k is only read by RLOO
            self.rloo_k = integer_at_least(self.rloo_k, "rloo_k", 2)
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
        REINFORCE and RLOO need no critic.

        Under ``mpiexec -n N`` (``minippo.distributed``) each rank samples and trains on its N-th of the
        prompts of an iteration and of each minibatch, with its own sampling stream (from an int seed);
        gradients, whitening, the KL controller and the returned figures are global."""
        self.config = config = config or RLHFConfig()
        self.world = distributed.world()
        self.minibatch_size = self.world.share(config.minibatch_size, "minibatch_size")  # this rank's
        self.policy, self.reward, self.tokenizer = policy, reward, tokenizer
        self.reference = copy.deepcopy(policy)  # frozen π_ref
        self.rng = as_generator(self.world.rank_seed(config.seed))
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
        self.world.broadcast_(self.params)
        self.iterations_done = 0
        self.optimizer = AdamW(self.params, self.grads, lr=config.learning_rate, betas=(0.9, 0.95), eps=1e-5)
        self.kl_controller = (FixedKLController(config.init_kl_coef) if config.kl_target is None else
                              AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon))

    def _zero_grad(self):
        for gradient in self.grads.values():
            gradient.fill(0.0)

    def _average_gradients(self, mask, stats):
        """The gradients and token-mean ``stats`` of this rank's minibatch (response tokens ``mask``)
        made those of every rank's minibatches together: weighted by the rank's share of the tokens,
        then averaged over the ranks.  Returns the averaged stats."""
        weight, _ = self.world.mean_weight(int(mask.sum()))
        if weight != 1.0:
            for gradient in self.grads.values():
                gradient *= weight
            stats = {name: value * weight for name, value in stats.items()}
        return self.world.average_gradients(self.grads, stats)

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(self, prompts):
        """One rollout + update on ``prompts`` (formatted prompt texts); returns a dict of statistics."""
        config = self.config
        share = self.world.share(len(prompts), "the number of prompts")
        prompts = prompts[self.world.rank * share:(self.world.rank + 1) * share]  # this rank's
        mean = self.world.mean  # over every rank's responses
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
        self.iterations_done += 1
        self.world.check_identical(self.params, f"RLHF iteration {self.iterations_done}")

        self.kl_controller.update(mean(batch["kl_per_response"]), len(rollout) * self.world.size)
        lengths = rollout.response_mask.sum(axis=1)
        return {
            "score": float(mean(scores)),
            "kl": float(mean(batch["kl_per_response"])),
            "kl_nonneg": float(mean(batch["kl_nonneg_per_response"])),
            "beta": self.kl_controller.beta,
            "response_length": float(mean(lengths)),
            **stats,
            **{f"seconds_{name}": value for name, value in timings.items()},
        }

    def _minibatches(self, size, shuffle):
        order = self.rng.permutation(size) if shuffle else np.arange(size)
        step = self.minibatch_size
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
        rewards = kl_penalty_rewards(old_logprobs, ref_logprobs, mask, scores, rollout.last_token_index,
                                     self.kl_controller.beta, config.kl_estimator)
        return {
            "old_logprobs": old_logprobs, "values": values, "rewards": rewards.astype(old_logprobs.dtype),
            "scores": scores,
            "kl_per_response": kl_estimate(old_logprobs, ref_logprobs, mask, "k1").sum(axis=1),
            "kl_nonneg_per_response": kl_estimate(old_logprobs, ref_logprobs, mask, "k3").sum(axis=1),
        }

    def _ppo_update(self, rollout, batch):
        config = self.config
        mask = rollout.response_mask
        values = batch["values"]
        # GAE over response tokens (batch-major, time along axis 1): the state after the last token has value 0
        next_values = np.concatenate([values[:, 1:], np.zeros_like(values[:, :1])], axis=1)
        continues = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1).astype(values.dtype)
        advantages, returns = generalized_advantages(batch["rewards"], values, next_values, continues, continues,
                                                     config.gamma, config.gae_lambda, time_axis=1)
        advantages = whiten(advantages, mask, world=self.world)
        history = []
        for epoch in range(config.update_epochs):
            for index in self._minibatches(len(rollout), shuffle=epoch > 0):
                history.append(self._ppo_minibatch(rollout.rows(index), batch["old_logprobs"][index],
                                                   advantages[index], returns[index], values[index]))
        stats = {key: float(np.mean([h[key] for h in history])) for key in history[0] if key != "ratio_max_error"}
        stats["first_ratio_max_error"] = history[0]["ratio_max_error"]  # 0: the first ratio is exactly 1
        stats["explained_variance"] = explained_variance(self.world.gather_rows(values[mask]),
                                                         self.world.gather_rows(returns[mask]))
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
        vloss, dvalues = value_loss(new_values, old_values, returns, config.clip_coef if config.clip_vloss else None, mask)
        dhidden = self.critic.hidden_gradient(dvalues * config.vf_coef, part)
        if self.critic.shared:
            self.policy.backward(dlogits, dhidden)
        else:
            self.policy.backward(dlogits)
            self.critic.trunk.backward(dhidden=dhidden)
        stats = self._average_gradients(mask, {
            "policy_loss": policy.loss, "value_loss": vloss, "entropy": float(entropy[mask].mean()),
            "approx_kl": policy.approx_kl, "clipfrac": policy.clipfrac})
        grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
        self.optimizer.step()
        ratio = np.exp(logprobs - old_logprobs)
        return {**stats, "grad_norm": grad_norm, "ratio_max_error": float(np.abs(ratio - 1.0)[mask].max())}

    def _reinforce_update(self, rollout, batch):
        config = self.config
        mask = rollout.response_mask
        returns = batch["rewards"].sum(axis=1).astype(np.float64)  # R = s − β Σ_t KL_t
        if config.algo == "rloo":
            groups = returns.reshape(-1, config.rloo_k)
            baseline = (groups.sum(axis=1, keepdims=True) - groups) / (config.rloo_k - 1)
            baseline = baseline.reshape(-1)
        else:
            baseline = np.full_like(returns, self.world.mean(returns))  # of every rank's responses
        advantages = np.repeat((returns - baseline)[:, None], mask.shape[1], axis=1).astype(batch["rewards"].dtype)
        history = []
        for index in self._minibatches(len(rollout), shuffle=True):
            part = rollout.rows(index)
            self._zero_grad()
            logprobs, log_probs_all = response_logprobs(self.policy, part, config.temperature)
            loss, dlogprobs = reinforce_loss(logprobs, advantages[index], part.response_mask)
            self.policy.backward(response_logprobs_backward(dlogprobs, part, log_probs_all, config.temperature))
            stats = self._average_gradients(part.response_mask, {
                "policy_loss": loss, "entropy": float(entropy_forward(log_probs_all)[part.response_mask].mean())})
            grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
            self.optimizer.step()
            history.append({"policy_loss": stats["policy_loss"], "grad_norm": grad_norm, "entropy": stats["entropy"]})
        return {key: float(np.mean([h[key] for h in history])) for key in history[0]}

"""PPO, REINFORCE, RLOO and GRPO for a language model, with a KL penalty to a frozen reference model.

One iteration:

1. **Rollout** -- sample a response to each prompt from π_T (KV-cache generation); RLOO and GRPO sample
   G = ``num_generations`` responses to each prompt.
2. **Score** -- the judge (reward model or rule) gives each finished response a score s.
3. **Per-token reward** (``minippo.rl.kl.kl_penalty_rewards``) -- on every response token
       r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t)),   plus s at the last real token,
   where π_ref is a frozen copy of the starting policy; β is fixed or adapted so the KL tracks a target.
   (``kl_estimator`` "k2" or "k3" replaces log π − log π_ref by another per-token estimate of the KL.)
   At β = 0 the reference model is not run at all.
4. **Advantages** -- a critic V(s_t) (value head on the policy's trunk, or on its own copy) and GAE with
   γ = 1, λ = 0.95 over response tokens only, on the batch-major (B, T) arrays
   (``generalized_advantages(..., time_axis=1)``); advantages whitened over response tokens only.
5. **Update** -- several epochs of minibatches of the clipped surrogate + clipped value loss, with
   global gradient-norm clipping.  Before the first update the recomputed log-probabilities equal those
   of the scoring pass, so PPO's ratio ρ = π/π_old is exactly 1.

REINFORCE uses the same rollouts with the sequence return R = s − β Σ_t KL_t minus a baseline (the
batch mean), and RLOO uses the mean return of the other G − 1 responses to the same prompt as each one's
baseline.  Both estimate ∇E[R] = E[(R − b) ∇ log π(τ)] with ∇ log π(τ) = Σ_t ∇ log π(a_t|s_t):
every response token of a minibatch carries its response's R − b, and the loss −mean((R − b) log π(a_t|s_t))
averages over the minibatch's response tokens.  One pass over the batch, one optimizer step per
minibatch (so only the first minibatch is exactly on-policy).

GRPO (DeepSeekMath; ``minippo.rl.losses.grpo_loss``) has no critic and no KL in the reward: each response's
score is compared with the others of its group, Â_i = (s_i − mean(s)) / (std(s) + ε)
(``minippo.rl.advantages.group_advantages``), every token of response i carries Â_i, and the KL to π_ref
enters the loss, β · KL_t with the k3 estimator by default.  The update is PPO's: ``update_epochs`` (μ)
passes of minibatches of the clipped surrogate, optionally with DAPO's ε_high, summed over tokens as
``loss_type`` says.  Groups whose scores are all equal carry no signal; ``dynamic_sampling_tries``
resamples them (DAPO) and drops those still equal.  ``mask_truncated_completions`` leaves the responses
cut at the length limit out of every algorithm's loss.  The statistics an iteration returns are
described in ``minippo.rlhf.diagnostics``.

:meth:`RLHFTrainer.save` writes a policy checkpoint that also holds the rest of the run, which
:meth:`RLHFTrainer.load_state` continues bit-identically (``minippo.rlhf.resume``).
"""
import copy
import time
from dataclasses import replace

import numpy as np

from minippo import distributed
from minippo.blas import blas_threads
from minippo.nn.categorical import entropy_backward, entropy_forward
from minippo.nn.heads import ValueHead
from minippo.nn.module import as_generator, prefixed
from minippo.nn.optim import AdamW, clip_grad_norm
from minippo.nn.scoring import continuation_logprobs
from minippo.rewards.rules import check_rewards
from minippo.rl.advantages import (
    generalized_advantages,
    group_advantages,
    leave_one_out_advantages,
    whiten,
    zero_std_groups,
)
from minippo.rl.kl import AdaptiveKLController, FixedKLController, kl_penalty_rewards
from minippo.rl.losses import (
    explained_variance,
    grpo_loss,
    ratio_stats,
    reinforce_loss,
    value_loss,
)
from minippo.rlhf.config import GROUPED_ALGORITHMS, RLHF_ALGORITHMS, RLHFConfig  # noqa: F401 (RLHF_ALGORITHMS: re-exported)
from minippo.rlhf.critic import Critic, critic_from_reward_model  # noqa: F401 (critic_from_reward_model: re-exported)
from minippo.rlhf.diagnostics import (
    completion_stats,
    kl_stats,
    mean_stats,
    reward_stats,
)
from minippo.rlhf.resume import load_run, save_run
from minippo.rlhf.rollout import (
    check_response_room,
    concatenate_rollouts,
    generate_rollout,
    response_logits_gradient,
    response_logprobs,
    response_logprobs_backward,
)


class RLHFTrainer:
    """Runs :meth:`iteration` on batches of prompts; see the module docstring for the algorithm."""

    def __init__(self, policy, reward, tokenizer, config=None, critic_trunk=None, value_head=None):
        """``reward(prompts, responses) -> (B,)`` is the judge, or a dict of judges by name whose scores are
        summed with ``config.reward_weights`` (each is logged as ``reward/<name>/mean`` and ``/std``).
        ``critic_trunk`` and ``value_head`` initialise a separate critic (default: a copy of the policy
        and a zero value head; :func:`critic_from_reward_model` starts it from the reward model instead).
        REINFORCE, RLOO and GRPO need no critic.

        Under ``mpiexec -n N`` (``minippo.distributed``) each rank samples and trains on its N-th of the
        prompts of an iteration and of each minibatch, with its own sampling stream (from an int seed);
        gradients, whitening, the KL controller and the returned figures are global."""
        self.config = config = config or RLHFConfig()
        self.world = distributed.world()
        if self.world.size > 1 and (config.mask_truncated_completions or config.dynamic_sampling_tries):
            raise ValueError("mask_truncated_completions and dynamic_sampling_tries are not supported across MPI "
                             "ranks: the ranks would take different numbers of optimizer steps")
        self.minibatch_size = self.world.share(config.minibatch_size, "minibatch_size")  # this rank's
        check_response_room(config.max_new_tokens, policy.config.block_size)  # before any output is written
        self.policy, self.reward, self.tokenizer = policy, reward, tokenizer
        self.reward_names = list(reward) if isinstance(reward, dict) else []
        if isinstance(reward, dict) and not reward:
            raise ValueError("reward is an empty dict: give at least one judge")
        if config.reward_weights is not None and len(config.reward_weights) != len(self.reward_names):
            raise ValueError(f"reward_weights has {len(config.reward_weights)} weights for "
                             f"{len(self.reward_names)} rewards ({', '.join(self.reward_names) or 'one callable'})"
                             f"; give one weight per entry of a dict of rewards")
        self.reward_weights = np.array(config.reward_weights or [1.0] * len(self.reward_names))
        if config.mask_truncated_completions and tokenizer.eos_id is None:
            raise ValueError("mask_truncated_completions needs a tokenizer with an EOS token: without one every "
                             "response is cut at max_new_tokens and nothing would be left to train on")
        self.kl_estimator = config.kl_estimator or ("k3" if config.algo == "grpo" else "k1")
        self.loss_type = config.loss_type or ("grpo" if config.algo == "grpo" else "dapo")
        self.reference = copy.deepcopy(policy)  # frozen π_ref
        self.rng = as_generator(self.world.rank_seed(config.seed))
        self.last_samples = []  # the prompts, responses and rewards of the last iteration (see iteration)
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
        self.modules = modules  # the trained ones, by name
        self.params, self.grads = prefixed(modules, "params"), prefixed(modules, "grads")
        self.world.broadcast_(self.params)
        self.iterations_done = 0
        self.optimizer = AdamW(self.params, self.grads, lr=config.learning_rate, betas=(0.9, 0.95), eps=1e-5)
        self.kl_controller = (FixedKLController(config.init_kl_coef) if config.kl_target is None else
                              AdaptiveKLController(config.init_kl_coef, config.kl_target, config.kl_horizon))

    # -- saving and resuming (minippo.rlhf.resume) -----------------------------------------------
    def save(self, path, extra=None):
        """Write the run to ``path``, with the caller's JSON-friendly ``extra`` (``resume.save_run``)."""
        save_run(self, path, extra)

    def load_state(self, path):
        """Continue the run :meth:`save` wrote to ``path``; returns its ``extra`` (``resume.load_run``)."""
        return load_run(self, path)

    def _zero_grad(self):
        for gradient in self.grads.values():
            gradient.fill(0.0)

    def _average_gradients(self, mask, stats):
        """The gradients and token-mean ``stats`` of this rank's minibatch (response tokens ``mask``)
        made those of every rank's minibatches together: weighted by the rank's share of the tokens,
        then averaged over the ranks.  Returns the averaged stats."""
        # the loss is a mean over tokens (loss_type "dapo", PPO's) or over responses ("grpo", "dr_grpo")
        weight, _ = self.world.mean_weight(int(mask.sum()) if self.loss_type == "dapo" else len(mask))
        if weight != 1.0:
            for gradient in self.grads.values():
                gradient *= weight
            stats = {name: value * weight for name, value in stats.items()}
        return self.world.average_gradients(self.grads, stats)

    # -- one iteration ---------------------------------------------------------------------------
    def iteration(self, prompts):
        """One rollout + update on ``prompts`` (formatted prompt texts, ``config.prompts_per_iteration`` of
        them); returns a dict of statistics (``minippo.rlhf.diagnostics``).  ``last_samples`` then holds one
        dict per response: prompt, response, reward, length (tokens) and truncated.

        Runs with ``config.blas_threads`` BLAS threads (default 1): the passes split their rows across
        minippo's own threads (``minippo.parallel``), and a product that OpenBLAS splits across its threads
        leaves them spinning for ~0.1 s, each taking a core from those passes (at the demo's sizes the
        reference pass after sampling took 52 ms instead of 28)."""
        with blas_threads(self.config.blas_threads):
            return self._iteration(prompts)

    def _iteration(self, prompts):
        config = self.config
        if len(prompts) != config.prompts_per_iteration:
            raise ValueError(f"iteration needs config.prompts_per_iteration = {config.prompts_per_iteration} "
                             f"prompts ({config.algo}, batch_size {config.batch_size}), got {len(prompts)}")
        share = self.world.share(len(prompts), "the number of prompts")
        prompts = prompts[self.world.rank * share:(self.world.rank + 1) * share]  # this rank's
        grouped = config.algo in GROUPED_ALGORITHMS
        if grouped:
            prompts = [p for p in prompts for _ in range(config.num_generations)]
        timings = dict.fromkeys(("generate", "score", "forward", "train"), 0.0)
        # 1. generate, 2. score
        rollout, scores, parts = self._sample(prompts, timings)
        group_stats = {}
        if grouped:
            zero_std = zero_std_groups(scores, config.num_generations).astype(np.float64)
            group_stats["frac_reward_zero_std"] = float(self.world.mean(zero_std))  # over every rank's groups
            if config.dynamic_sampling_tries:
                rollout, scores, parts, resampling = self._dynamic_sampling(rollout, scores, parts, timings)
                group_stats.update(resampling)
        truncated = ~rollout.ended_with(self.tokenizer.eos_id)
        lengths = rollout.response_mask.sum(axis=1)
        self.last_samples = [{"prompt": p, "response": r, "reward": float(s), "length": int(n), "truncated": bool(t),
                              **({"rewards": dict(zip(self.reward_names, map(float, part)))} if self.reward_names
                                 else {})}
                             for p, r, s, n, t, part in zip(rollout.prompts, rollout.responses, scores, lengths,
                                                            truncated, parts)]

        # 3. old and reference log-probabilities, per-token rewards
        started = time.perf_counter()
        batch = self._score_tokens(rollout, scores)
        timings["forward"] = time.perf_counter() - started

        # 4. advantages, 5. update
        started = time.perf_counter()
        trained = rollout
        if config.mask_truncated_completions:  # cut responses count in no loss (their scores did in the groups)
            trained = replace(rollout, response_mask=rollout.response_mask & ~truncated[:, None])
        advantages, returns = self._advantages(trained, batch)
        if config.algo in ("ppo", "grpo"):
            stats = self._ppo_update(trained, batch, advantages, returns)
        else:
            stats = self._reinforce_update(trained, batch, advantages)
        timings["train"] = time.perf_counter() - started
        self.iterations_done += 1
        self.world.check_identical(self.params, f"RLHF iteration {self.iterations_done}")

        gather = self.world.gather_rows  # every rank's responses
        kl = kl_stats(batch["old_logprobs"], batch["ref_logprobs"], rollout.response_mask, self.world)
        if batch["ref_logprobs"] is not None:  # at β = 0 there is no KL to track (and β stays 0)
            self.kl_controller.update(kl["objective/kl_k1"], len(rollout) * self.world.size)
        return {
            **reward_stats(gather(scores), gather(parts), self.reward_names), **kl,
            "objective/beta": self.kl_controller.beta, **completion_stats(gather(lengths), gather(truncated)),
            **group_stats, **stats,
            **{f"time/{name}": value for name, value in timings.items()},
        }

    def _sample(self, prompts, timings):
        """A rollout of ``prompts``, its scores (B,) (after the missing-EOS penalty) and, for a dict of
        rewards, each one's scores (B, K) (K = 0 for one callable); adds to ``timings``."""
        config = self.config
        started = time.perf_counter()
        rollout = generate_rollout(self.policy, self.tokenizer, prompts, config.max_new_tokens,
                                   config.temperature, self.rng)
        timings["generate"] += time.perf_counter() - started
        started = time.perf_counter()
        if self.reward_names:
            parts = np.stack([self._judge(self.reward[name], rollout, f"reward {name!r}: ")
                              for name in self.reward_names], axis=1)  # (B, K)
            scores = (parts * self.reward_weights).sum(axis=1)  # s = Σ_k w_k s_k
        else:
            scores, parts = self._judge(self.reward, rollout), np.zeros((len(rollout), 0))
        if config.missing_eos_penalty is not None:
            scores = scores - config.missing_eos_penalty * ~rollout.ended_with(self.tokenizer.eos_id)
        timings["score"] += time.perf_counter() - started
        return rollout, scores, parts

    @staticmethod
    def _judge(reward, rollout, name=""):
        """The checked scores (B,) of one judge; an error names the judge (``name``) when there are several."""
        try:
            return check_rewards(reward(rollout.prompts, rollout.responses), rollout.responses)
        except (TypeError, ValueError) as error:
            if not name:
                raise
            raise type(error)(f"{name}{error}") from None

    def _dynamic_sampling(self, rollout, scores, parts, timings):
        """DAPO's dynamic sampling: sample the groups whose scores are all equal again, up to
        ``dynamic_sampling_tries`` times, then drop those still all equal -- unless every group is, in which
        case the batch is kept (all its advantages are 0).  Groups stay G consecutive rows."""
        group = self.config.num_generations
        resampled = 0
        for _ in range(self.config.dynamic_sampling_tries):
            flat = np.repeat(zero_std_groups(scores, group), group)  # (B,) rows of the all-equal groups
            if not flat.any():
                break
            retry, retry_scores, retry_parts = self._sample([p for p, f in zip(rollout.prompts, flat) if f], timings)
            resampled += int(flat.sum()) // group
            keep = np.flatnonzero(~flat)
            rollout = concatenate_rollouts([rollout.rows(keep), retry], self.tokenizer.pad_id)
            scores, parts = np.concatenate([scores[keep], retry_scores]), np.concatenate([parts[keep], retry_parts])
        flat = np.repeat(zero_std_groups(scores, group), group)
        dropped = int(flat.sum()) // group if not flat.all() else 0
        if dropped:
            keep = np.flatnonzero(~flat)
            rollout, scores, parts = rollout.rows(keep), scores[keep], parts[keep]
        counts = {"dynamic_sampling/resampled_groups": resampled, "dynamic_sampling/dropped_groups": dropped}
        return rollout, scores, parts, counts

    def _minibatches(self, size, shuffle):
        order = self.rng.permutation(size) if shuffle else np.arange(size)
        step = self.minibatch_size
        return [order[i:i + step] for i in range(0, size, step)]

    def _score_tokens(self, rollout, scores):
        """Old and reference log-probabilities, values and per-token rewards of a rollout.

        REINFORCE, RLOO and GRPO take log π_old from the sampler: its log π_T(a_t|s_t) is the same
        distribution from the KV-cache decode (equal to a forward pass within round-off:
        ``tests/test_gpt.py::test_generate_logprobs_equal_full_forward``), so they run no policy forward
        here, and GRPO's first ratio is 1 within round-off.  PPO recomputes log π_old with the same forward
        pass, on the same minibatches, as its first update epoch, so its first ratio is exactly 1 (and its
        values come from the same minibatches).  The frozen reference is scored in one pass that keeps no
        backward caches (``minippo.nn.scoring``); at β = 0 it is not run (``ref_logprobs`` is None).
        """
        config = self.config
        mask = rollout.response_mask
        recompute = config.algo == "ppo"
        old_logprobs = (np.zeros(mask.shape, dtype=self.policy.config.dtype) if recompute else
                        rollout.sampled_logprobs.astype(self.policy.config.dtype))  # 0 after EOS (masked)
        ref_logprobs = None
        if self.kl_controller.beta:  # the frozen reference: one pass over the batch, no backward caches
            ref_logprobs = continuation_logprobs(self.reference, rollout.tokens, rollout.attention_mask,
                                                 rollout.prompt_length, config.temperature)
        values = np.zeros_like(old_logprobs)
        for index in self._minibatches(len(rollout), shuffle=False) if recompute else ():
            part = rollout.rows(index)
            old_logprobs[index] = response_logprobs(self.policy, part, config.temperature)[0]
            values[index] = self.critic.values(part, run_trunk=not self.critic.shared)
        batch = {"old_logprobs": old_logprobs, "ref_logprobs": ref_logprobs, "values": values, "scores": scores}
        if config.algo != "grpo":  # GRPO puts the KL in its loss, not in the reward
            rewards = kl_penalty_rewards(old_logprobs, old_logprobs if ref_logprobs is None else ref_logprobs,
                                         mask, scores, rollout.last_token_index, self.kl_controller.beta,
                                         self.kl_estimator)  # β = 0: the reference does not matter
            batch["rewards"] = rewards.astype(old_logprobs.dtype)
        return batch

    def _advantages(self, rollout, batch):
        """(advantages (B, T), returns (B, T) or None): GAE on the critic's values for PPO, otherwise each
        response's advantage on every one of its tokens."""
        config = self.config
        mask = rollout.response_mask
        if config.algo == "ppo":
            values = batch["values"]
            # GAE over response tokens (batch-major, time along axis 1): the state after the last token has value 0
            next_values = np.concatenate([values[:, 1:], np.zeros_like(values[:, :1])], axis=1)
            continues = np.concatenate([mask[:, 1:], np.zeros_like(mask[:, :1])], axis=1).astype(values.dtype)
            advantages, returns = generalized_advantages(batch["rewards"], values, next_values, continues, continues,
                                                         config.gamma, config.gae_lambda, time_axis=1)
            if not mask.any():  # every response is left out of the loss (mask_truncated_completions)
                return advantages, returns
            return whiten(advantages, mask, world=self.world), returns
        if config.algo == "grpo":
            per_response = group_advantages(batch["scores"], config.num_generations, config.scale_rewards)
        else:
            returns = batch["rewards"].sum(axis=1).astype(np.float64)  # R = s − β Σ_t KL_t
            per_response = (leave_one_out_advantages(returns, config.num_generations) if config.algo == "rloo"
                            else returns - self.world.mean(returns))  # of every rank's responses
        dtype = batch["old_logprobs"].dtype
        return np.repeat(per_response[:, None], mask.shape[1], axis=1).astype(dtype), None

    def _ppo_update(self, rollout, batch, advantages, returns):
        """The clipped-surrogate updates of PPO (with its critic) and GRPO (with β · KL in the loss)."""
        config = self.config
        history = []
        for epoch in range(config.update_epochs):
            for index in self._minibatches(len(rollout), shuffle=epoch > 0):
                part = rollout.rows(index)
                if not part.response_mask.any():  # every response here is left out of the loss
                    continue
                history.append(self._ppo_minibatch(
                    part, batch["old_logprobs"][index],
                    None if batch["ref_logprobs"] is None else batch["ref_logprobs"][index], advantages[index],
                    None if returns is None else returns[index], batch["values"][index]))
        stats = mean_stats([{k: v for k, v in h.items() if k != "ratio_max_error"} for h in history])
        if history:
            stats["policy/first_ratio_max_error"] = history[0]["ratio_max_error"]  # 0: the first ratio is exactly 1
        mask = rollout.response_mask
        if self.critic is not None and mask.any():
            stats["value/explained_variance"] = explained_variance(self.world.gather_rows(batch["values"][mask]),
                                                                   self.world.gather_rows(returns[mask]))
        return stats

    def _ppo_minibatch(self, part, old_logprobs, ref_logprobs, advantages, returns, old_values):
        config = self.config
        mask = part.response_mask
        self._zero_grad()
        logprobs, log_probs_all = response_logprobs(self.policy, part, config.temperature)
        beta = self.kl_controller.beta if config.algo == "grpo" else 0.0  # PPO's KL is in the reward
        policy = grpo_loss(logprobs, old_logprobs, ref_logprobs, advantages, config.clip_coef, mask,
                           config.clip_coef_high, beta, self.kl_estimator, self.loss_type, config.max_new_tokens)
        dlogits = response_logprobs_backward(policy.dlogprobs, part, log_probs_all, config.temperature)
        entropy = entropy_forward(log_probs_all)
        if config.ent_coef:
            weights = (mask / mask.sum()).astype(entropy.dtype) * -config.ent_coef
            dlogits += response_logits_gradient(entropy_backward(weights, log_probs_all, entropy),
                                                part, config.temperature, log_probs_all.shape[-1])
        stats = {}
        if self.critic is None:
            self.policy.backward(dlogits)
        else:
            new_values = self.critic.values(part, run_trunk=not self.critic.shared)
            value_clip = config.clip_coef if config.clip_vloss else None
            vloss, dvalues = value_loss(new_values, old_values, returns, value_clip, mask)
            dhidden = self.critic.hidden_gradient(dvalues * config.vf_coef, part)
            if self.critic.shared:
                self.policy.backward(dlogits, dhidden)
            else:
                self.policy.backward(dlogits)
                self.critic.trunk.backward(dhidden=dhidden)
            stats["value/loss"] = vloss
        stats = self._average_gradients(mask, {
            "policy/loss": policy.loss, "policy/entropy": float(entropy[mask].mean()),
            "policy/approx_kl": policy.approx_kl, "policy/clipfrac_low": policy.clipfrac_low,
            "policy/clipfrac_high": policy.clipfrac_high, **stats})
        grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
        self.optimizer.step()
        ratio = np.exp(logprobs - old_logprobs)
        return {**stats, "grad_norm": grad_norm, "ratio_max_error": float(np.abs(ratio - 1.0)[mask].max())}

    def _reinforce_update(self, rollout, batch, advantages):
        """REINFORCE and RLOO: one shuffled pass, one optimizer step per minibatch."""
        config = self.config
        history = []
        for index in self._minibatches(len(rollout), shuffle=True):
            part = rollout.rows(index)
            mask = part.response_mask
            if not mask.any():  # every response here is left out of the loss
                continue
            self._zero_grad()
            logprobs, log_probs_all = response_logprobs(self.policy, part, config.temperature)
            loss, dlogprobs = reinforce_loss(logprobs, advantages[index], mask, self.loss_type, config.max_new_tokens)
            self.policy.backward(response_logprobs_backward(dlogprobs, part, log_probs_all, config.temperature))
            stats = self._average_gradients(mask, {
                "policy/loss": loss, "policy/entropy": float(entropy_forward(log_probs_all)[mask].mean())})
            grad_norm = clip_grad_norm(self.grads, config.max_grad_norm)
            self.optimizer.step()
            ratio = ratio_stats(logprobs, batch["old_logprobs"][index], config.clip_coef, config.clip_coef_high, mask)
            history.append({**stats, "policy/approx_kl": ratio.approx_kl, "policy/clipfrac_low": ratio.clipfrac_low,
                            "policy/clipfrac_high": ratio.clipfrac_high, "grad_norm": grad_norm})
        return mean_stats(history)

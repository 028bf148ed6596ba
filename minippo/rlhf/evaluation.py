"""Held-out evaluation of a language-model policy: its mean reward and its KL to the reference policy on
prompts the run does not train on, in batches of bounded size; and ``rlhf --eval-every K``, which keeps the
best policy (``best.npz``) and stops at ``--stop-at``.

The KL of a response y to prompt x is KL(π(·|x) ‖ π_ref(·|x)) = E_y[Σ_t log π(y_t|s_t) − log π_ref(y_t|s_t)]:

* with sampled responses, its Monte Carlo estimate Σ_t (log π − log π_ref) at the sampled tokens (k1, the
  demo's figure);
* with greedy responses (``greedy=True``) the tokens are not samples of π, so the figure is the exact KL
  of the next-token distributions summed along the greedy path, Σ_t Σ_v π(v|s_t) (log π(v|s_t) −
  log π_ref(v|s_t)).

Both use the temperature the policy is trained at.  Each evaluation samples from a generator made afresh
from ``seed``, so evaluations of successive policies see the same random numbers, and an evaluation
repeated gives the same figures.
"""
import numpy as np

from minippo.checks import integer_at_least
from minippo.envs.wrappers import RunningMeanStd
from minippo.nn.checkpoint import save_checkpoint
from minippo.rl.evaluation import EvaluationTracker
from minippo.rlhf.rollout import encode_prompts, generate_rollout, response_logprobs
from minippo.text.corpus import load_prompts
from minippo.text.gpt2 import tokenizer_record
from minippo.text.template import Template

EVAL_BATCH_SIZE = 32  # prompts generated and scored at once
RLHF_METRICS = ("reward",)  # --eval-metric of rlhf; higher is better


def held_out_prompts(template=None):
    """The shipped test prompts (never seen in training) laid out by ``template`` (default: "Q: ... A:")."""
    template = template or Template()
    return [template.prompt_text(prompt) for prompt in load_prompts("test")]


def judge(reward, prompts, responses, weights=None):
    """The scores (B,) of ``reward(prompts, responses)``, or Σ_k w_k reward_k(...) for a dict of rewards."""
    if isinstance(reward, dict):
        weights = np.ones(len(reward)) if weights is None else weights
        return sum(w * np.asarray(r(prompts, responses), dtype=np.float64) for w, r in zip(weights, reward.values()))
    return np.asarray(reward(prompts, responses))


def score_responses(policy, reference, reward, tokenizer, prompts, max_new_tokens, temperature, rng,
                    greedy=False, weights=None):
    """``(rollout, scores (B,), kl (B,))`` of one response to each of ``prompts`` (module docstring)."""
    rollout = generate_rollout(policy, tokenizer, prompts, max_new_tokens, 0.0 if greedy else temperature, rng)
    scores = judge(reward, rollout.prompts, rollout.responses, weights)
    logprobs, log_probs_all = response_logprobs(policy, rollout, temperature)
    ref_logprobs, ref_log_probs_all = response_logprobs(reference, rollout, temperature)
    if greedy:  # Σ_v π (log π − log π_ref) at every response position, (B, T_response)
        per_token = (np.exp(log_probs_all) * (log_probs_all - ref_log_probs_all)).sum(axis=-1)
    else:
        per_token = logprobs - ref_logprobs
    kl = np.where(rollout.response_mask, per_token, 0.0).sum(axis=1)
    return rollout, scores, kl


def evaluate_rlhf(trainer_or_policy, reward=None, prompts=None, *, reference=None, tokenizer=None,
                  max_new_tokens=None, temperature=None, seed=0, greedy=False, batch_size=EVAL_BATCH_SIZE):
    """Mean reward and mean KL to the reference of one response to each of ``prompts``.

    ``trainer_or_policy``: an ``RLHFTrainer`` (its policy, reference, tokenizer, reward with its weights,
    ``max_new_tokens`` and ``temperature`` are the defaults) or a GPT policy (then ``reference`` and
    ``tokenizer`` are needed).  ``prompts`` default to :func:`held_out_prompts`.  Responses are sampled with
    a generator seeded by ``seed`` (or greedy), ``batch_size`` prompts at a time, into running statistics.
    Returns ``{"eval/reward", "eval/reward_std", "eval/kl", "eval/responses"}``.
    """
    weights = None
    if hasattr(trainer_or_policy, "policy"):  # an RLHFTrainer
        trainer = trainer_or_policy
        policy, config = trainer.policy, trainer.config
        reference = trainer.reference if reference is None else reference
        tokenizer = trainer.tokenizer if tokenizer is None else tokenizer
        if reward is None:
            reward, weights = trainer.reward, (trainer.reward_weights if trainer.reward_names else None)
        max_new_tokens = config.max_new_tokens if max_new_tokens is None else max_new_tokens
        temperature = config.temperature if temperature is None else temperature
    else:
        policy = trainer_or_policy
        temperature = 1.0 if temperature is None else temperature
    for value, name in ((reward, "reward"), (reference, "reference"), (tokenizer, "tokenizer"),
                        (max_new_tokens, "max_new_tokens")):
        if value is None:
            raise TypeError(f"evaluate_rlhf needs {name} when given a policy rather than an RLHFTrainer")
    batch_size = integer_at_least(batch_size, "batch_size", 1)
    prompts = held_out_prompts() if prompts is None else list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: give at least one held-out prompt")
    rng = np.random.default_rng(seed)
    rewards, kls = RunningMeanStd(), RunningMeanStd()
    for start in range(0, len(prompts), batch_size):
        _, scores, kl = score_responses(policy, reference, reward, tokenizer, prompts[start:start + batch_size],
                                        max_new_tokens, temperature, rng, greedy, weights)
        rewards.update(np.asarray(scores, dtype=np.float64))
        kls.update(kl)
    return {"eval/reward": float(rewards.mean), "eval/reward_std": float(np.sqrt(rewards.var)),
            "eval/kl": float(kls.mean), "eval/responses": rewards.count}


def save_policy(path, policy, tokenizer, template=None):
    """The policy as a ``gpt`` checkpoint that ``rlhf --policy`` and ``generate`` load, with its tokenizer and
    prompt template."""
    extra = {"tokenizer": tokenizer_record(tokenizer), "template": (template or Template()).text}
    save_checkpoint(path, policy.params, policy.config.to_dict(), extra=extra, kind="gpt")


class PeriodicRLHFEvaluation:
    """``rlhf --eval-every``: call after each iteration with its stats row; every ``every`` iterations it
    adds :func:`evaluate_rlhf`'s ``eval/*`` figures on ``prompts`` to the row, saves the best policy to
    ``best_path`` (rank 0; None: keep none) and returns True (stop) once ``metric`` reaches ``stop_at``."""

    def __init__(self, trainer, every, prompts=None, metric="reward", stop_at=None, best_path=None, seed=0,
                 greedy=False, log=print, template=None):
        self.trainer, self.every = trainer, integer_at_least(every, "every", 1)
        self.template = template
        self.prompts = held_out_prompts(template) if prompts is None else list(prompts)
        encode_prompts(trainer.policy, trainer.tokenizer, self.prompts,  # a prompt too long: an error now, not later
                       trainer.config.max_new_tokens)
        self.seed, self.greedy = seed, greedy
        self.tracker = EvaluationTracker(f"eval/{metric}", "iteration", stop_at, best_path, log)

    def save(self, path):
        if self.trainer.world.is_root:
            save_policy(path, self.trainer.policy, self.trainer.tokenizer, self.template)

    def __call__(self, iteration, row):
        if iteration % self.every:
            return False
        metrics = evaluate_rlhf(self.trainer, prompts=self.prompts, seed=self.seed, greedy=self.greedy)
        row.update(metrics)
        return self.tracker.record(iteration, metrics, self.save,
                                   f"reward {metrics['eval/reward']:+.3f} ± {metrics['eval/reward_std']:.3f}, "
                                   f"kl {metrics['eval/kl']:.2f} over {metrics['eval/responses']} held-out responses")

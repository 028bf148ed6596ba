"""``RLHFConfig``: the settings of the RLHF trainer, each field with its one-line help and its check.

The defaults follow OpenAI's lm-human-preferences, Hugging Face's TRL and "The N+ Implementation Details
of RLHF with PPO" (γ = 1, λ = 0.95, adaptive KL control).  Names are shared with TRL's GRPO where the
thing is the same: ``num_generations`` (G, also RLOO's group size), ``scale_rewards``, ``loss_type``,
``mask_truncated_completions``.  Where minippo already had a name for the same thing it is kept:

- ``clip_coef`` is GRPO's ε (TRL: ``epsilon``) and ``clip_coef_high`` DAPO's ε_high (``epsilon_high``);
- ``update_epochs`` is GRPO's μ, passes over each batch (TRL: ``num_iterations``);
- ``init_kl_coef`` is GRPO's β (TRL: ``beta``); with ``kl_target`` set it adapts, as PPO's does.
"""
from dataclasses import dataclass

from minippo.checks import (
    check_choice,
    check_seed,
    check_settings,
    finite,
    finite_number,
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
from minippo.rl.advantages import SCALE_REWARDS
from minippo.rl.kl import KL_ESTIMATORS
from minippo.rl.losses import LOSS_TYPES

RLHF_ALGORITHMS = ("ppo", "reinforce", "rloo", "grpo")
GROUPED_ALGORITHMS = ("rloo", "grpo")  # G responses per prompt, judged against each other


def algorithm_default(choices, default):
    """A check for one of ``choices``, or None for the algorithm's default (``default`` says which)."""
    def check(value, name):
        return None if value is None else check_choice(value, name, choices)
    check.rule = f"one of {', '.join(choices)}, or None for {default}"
    return check


def weights_rule(value, name):
    """A check for None or a sequence of finite numbers (stored as a tuple of floats)."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers or None, got {type(value).__name__}")
    return tuple(finite_number(weight, f"{name}[{index}]") for index, weight in enumerate(value))


weights_rule.rule = "a sequence of finite numbers, or None for all 1"


@dataclass
class RLHFConfig:
    """Settings of :class:`minippo.rlhf.trainer.RLHFTrainer` (see the module docstring for the names)."""

    algo: str = setting("ppo", "algorithm", one_of(*RLHF_ALGORITHMS))
    batch_size: int = setting(64, "responses per iteration (RLOO, GRPO: prompts × num_generations)", integer(1))
    num_generations: int = setting(4, "RLOO and GRPO: responses per prompt, G (>= 2, dividing batch_size)",
                                   integer(1))
    max_new_tokens: int = setting(40, "response length limit, in tokens", integer(1))
    temperature: float = setting(1.0, "sampling temperature (divides the logits in every forward pass)", positive)
    learning_rate: float = setting(1e-4, "AdamW learning rate", positive)
    update_epochs: int = setting(4, "PPO and GRPO: passes over each batch (GRPO's μ)", integer(1))
    minibatch_size: int = setting(16, "responses per gradient step; must divide batch_size", integer(1))
    clip_coef: float = setting(0.2, "ε of the clipped surrogate (and of PPO's value clipping)", positive)
    clip_coef_high: float = setting(None, "upper ε of the ratio clip, DAPO's clip-higher (None: clip_coef)",
                                    optional(positive))
    clip_vloss: bool = setting(True, "clip the value loss around the old values", flag)
    vf_coef: float = setting(0.5, "weight of the value loss", non_negative)
    ent_coef: float = setting(0.0, "weight of the entropy bonus", non_negative)
    gamma: float = setting(1.0, "discount factor γ over response tokens", fraction)
    gae_lambda: float = setting(0.95, "λ of generalised advantage estimation", fraction)
    max_grad_norm: float = setting(1.0, "global gradient-norm clip (None: off)", optional(positive))
    init_kl_coef: float = setting(0.2, "initial β of the KL penalty (GRPO: of the KL term in the loss); 0: no "
                                  "reference forward", non_negative)
    kl_target: float = setting(6.0, "adaptive-KL target, nats per response (None: β stays fixed)",
                               optional(positive))
    kl_horizon: float = setting(500.0, "adaptive-KL horizon, in responses (lm-human-preferences: 10,000 with "
                                "far larger batches)", positive)
    kl_estimator: str = setting(None, "per-token KL estimator, in the reward (PPO, REINFORCE, RLOO) or the loss "
                                "(GRPO)", algorithm_default(KL_ESTIMATORS, "k3 for grpo, k1 otherwise"))
    scale_rewards: str = setting("group", "GRPO: divide the advantage by the std of the group, the batch or "
                                 "none (Dr. GRPO)", one_of(*SCALE_REWARDS))
    loss_type: str = setting(None, "how token losses are summed (minippo.rl.losses.loss_weights)",
                             algorithm_default(LOSS_TYPES, "grpo for grpo, dapo (token mean) otherwise"))
    reward_weights: tuple = setting(None, "weights of the judges when the reward is a dict of them, in its order "
                                    "(None: all 1)", weights_rule)
    missing_eos_penalty: float = setting(None, "subtracted from the score of a response that never emits EOS "
                                         "(None: off)", optional(finite))
    mask_truncated_completions: bool = setting(False, "leave responses cut at max_new_tokens out of the loss",
                                               flag)
    dynamic_sampling_tries: int = setting(0, "RLOO and GRPO: resample groups with all-equal rewards up to this "
                                          "many times, then drop them (DAPO; 0: off)", integer(0))
    blas_threads: int = setting(1, "BLAS threads during an iteration, outside minippo's own thread pool "
                                "(minippo.rlhf.trainer; minippo.blas)", integer(1))
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
        if self.algo in GROUPED_ALGORITHMS:  # num_generations is only read by the grouped methods
            self.num_generations = integer_at_least(self.num_generations, "num_generations", 2)
            if self.batch_size % self.num_generations:
                raise ValueError(f"{self.algo} samples num_generations responses per prompt, so num_generations "
                                 f"({self.num_generations}) must divide batch_size ({self.batch_size})")
        elif self.dynamic_sampling_tries:
            raise ValueError(f"dynamic_sampling_tries resamples groups of responses to a prompt; {self.algo} has "
                             f"none (use rloo or grpo)")

    @property
    def prompts_per_iteration(self):
        """How many prompts :meth:`RLHFTrainer.iteration` takes: batch_size / num_generations for the
        grouped methods, batch_size otherwise."""
        return self.batch_size // self.num_generations if self.algo in GROUPED_ALGORITHMS else self.batch_size

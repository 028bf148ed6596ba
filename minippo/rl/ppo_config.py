"""The settings of PPO and REINFORCE on control tasks, and named presets of them.

Every field carries a one-line help and its check (``minippo.checks.setting``); the defaults are
CleanRL's ppo.py defaults for CartPole-v1.  The algorithm itself is described in ``minippo.rl.ppo``.
"""
from dataclasses import dataclass, replace

from minippo import envs
from minippo.checks import (
    check_settings,
    flag,
    fraction,
    integer,
    is_integer,
    non_negative,
    one_of,
    optional,
    positive,
    setting,
    text,
)
from minippo.nn.module import check_dtype

CONTROL_ALGORITHMS = ("ppo", "reinforce")


def hidden_sizes_rule(value, name):
    """A check for a sequence of positive layer widths (stored as a tuple)."""
    value = tuple(value)
    if any(not is_integer(n) or n < 1 for n in value):
        raise ValueError(f"{name} must be positive ints, got {value}")
    return value


hidden_sizes_rule.rule = "positive integers"


def dtype_rule(value, name):
    """Any spelling ``GPTConfig`` takes (np.float64, 'f8', ...), stored by name (JSON-friendly)."""
    return check_dtype(value).name


dtype_rule.rule = "float32 or float64"


@dataclass
class PPOConfig:
    """Hyper-parameters; the defaults are CleanRL's ppo.py defaults for CartPole-v1.

    Numbers are stored as Python floats: a NumPy float64 would make float32 arithmetic float64 (NEP 50).
    """

    env_id: str = setting("CartPole-v1", "environment id: CartPole-v1, Pendulum-v1 or gymnasium:<id>", text)
    algo: str = setting("ppo", "algorithm", one_of(*CONTROL_ALGORITHMS))
    total_steps: int = setting(500_000, "environment steps, summed over the sub-environments", integer(1))
    seed: int = setting(1, "seed of the environments, the networks and the sampling", integer(0))
    num_envs: int = setting(4, "parallel sub-environments", integer(1))
    num_steps: int = setting(128, "rollout length per sub-environment", integer(1))
    learning_rate: float = setting(2.5e-4, "Adam learning rate (at the start, with anneal_lr)", positive)
    anneal_lr: bool = setting(True, "linear decay of the learning rate to 0 over the run", flag)
    gamma: float = setting(0.99, "discount factor γ", fraction)
    gae_lambda: float = setting(0.95, "λ of generalised advantage estimation", fraction)
    num_minibatches: int = setting(4, "minibatches per epoch", integer(1))
    update_epochs: int = setting(4, "passes over each rollout", integer(1))
    norm_adv: bool = setting(True, "whiten advantages per minibatch (REINFORCE: per batch)", flag)
    clip_coef: float = setting(0.2, "ε of the clipped surrogate (and of the value clipping)", positive)
    clip_vloss: bool = setting(True, "clip the value loss around the old values", flag)
    ent_coef: float = setting(0.01, "weight of the entropy bonus", non_negative)
    vf_coef: float = setting(0.5, "weight of the value loss", non_negative)
    max_grad_norm: float = setting(0.5, "global gradient-norm clip (None: off)", optional(positive))
    target_kl: float = setting(None, "stop the epochs early once approx KL passes this (None: off)",
                               optional(positive))
    hidden_sizes: tuple = setting((64, 64), "widths of the hidden layers", hidden_sizes_rule)
    normalize_obs: bool = setting(False, "normalise observations by running statistics, then clip", flag)
    obs_clip: float = setting(10.0, "clip of the normalised observations", positive)
    normalize_reward: bool = setting(False, "scale rewards by the running std of the discounted return, then clip",
                                     flag)
    reward_clip: float = setting(10.0, "clip of the scaled rewards", positive)
    reinforce_baseline: bool = setting(True, "REINFORCE only: subtract V(s) and train the critic", flag)
    blas_threads: int = setting(1, "BLAS threads (64-wide layers run faster on one; minippo.blas)", integer(1))
    dtype: str = setting("float32", "dtype of the networks and the rollout buffers", dtype_rule)

    def __post_init__(self):
        check_settings(self)
        if self.total_steps < self.batch_size:
            raise ValueError(f"total_steps={self.total_steps} is less than one rollout "
                             f"(num_envs * num_steps = {self.batch_size})")
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches} must divide "
                             f"num_envs * num_steps = {self.batch_size}")
        whitened = self.batch_size if self.algo == "reinforce" else self.minibatch_size
        if self.norm_adv and whitened == 1:  # (A − mean A)/(std A + ε) of one advantage is 0
            what = "batches (num_envs * num_steps)" if self.algo == "reinforce" else "minibatches"
            raise ValueError(f"norm_adv whitens the advantages of each of the {what}, which here hold one "
                             f"sample: every advantage would be 0 and nothing learned; use more samples per "
                             f"update or norm_adv=False")

    @property
    def batch_size(self):
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self):
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self):
        return self.total_steps // self.batch_size


# What a task without a preset gets, chosen by its action space (:func:`recipe_for`).
RECIPES = {
    # CleanRL ppo.py defaults, for discrete actions.
    "discrete": PPOConfig(),
    # CleanRL ppo_continuous_action.py defaults: normalised observations and rewards, one environment of
    # 2,048-step rollouts, 32 minibatches, 10 epochs, no entropy bonus.
    "continuous": PPOConfig(total_steps=1_000_000, num_envs=1, num_steps=2048, learning_rate=3e-4,
                            num_minibatches=32, update_epochs=10, ent_coef=0.0, normalize_obs=True,
                            normalize_reward=True),
}


def continuous_preset(env_id, **changes):
    """The continuous recipe on ``env_id`` with ``changes``."""
    return replace(RECIPES["continuous"], env_id=env_id, **changes)


PRESETS = {
    # CleanRL ppo.py defaults.
    "cartpole": PPOConfig(),
    # Tuned for wall time: 4x the environments per step (cheap: one batched call), so 4x larger
    # minibatches, and an 8x larger learning rate.
    "cartpole-fast": PPOConfig(total_steps=300_000, num_envs=16, learning_rate=2e-3),
    # REINFORCE with a learned baseline: one gradient step per 2,048-step rollout.
    "cartpole-reinforce": PPOConfig(algo="reinforce", total_steps=300_000, num_envs=16, learning_rate=1e-2,
                                    gae_lambda=1.0, ent_coef=0.0),
    # CleanRL ppo_continuous_action.py defaults.
    "pendulum": continuous_preset("Pendulum-v1"),
    # The zoo (docs/ppo.md): RL Baselines3 Zoo's tuned PPO hyper-parameters (hyperparams/ppo.yml; SB3's
    # batch_size is our minibatch size, n_epochs our update_epochs, "normalize" our two normalisations),
    # and CleanRL's continuous recipe on MuJoCo.
    "acrobot": PPOConfig(env_id="gymnasium:Acrobot-v1", total_steps=1_000_000, num_envs=16, num_steps=256,
                         learning_rate=3e-4, num_minibatches=64, gae_lambda=0.94, ent_coef=0.0,
                         normalize_obs=True, normalize_reward=True),
    "mountaincar": PPOConfig(env_id="gymnasium:MountainCar-v0", total_steps=1_000_000, num_envs=16, num_steps=16,
                             learning_rate=3e-4, num_minibatches=4, gae_lambda=0.98, ent_coef=0.0,
                             normalize_obs=True, normalize_reward=True),
    "mountaincar-continuous": continuous_preset("gymnasium:MountainCarContinuous-v0", total_steps=100_000,
                                                num_steps=256, learning_rate=7.77e-5, num_minibatches=1,
                                                gamma=0.9999, gae_lambda=0.9, clip_coef=0.1, ent_coef=0.00429,
                                                vf_coef=0.19, max_grad_norm=5.0),
    "lunarlander": PPOConfig(env_id="gymnasium:LunarLander-v3", total_steps=1_000_000, num_envs=16,
                             num_steps=1024, learning_rate=3e-4, num_minibatches=256, gamma=0.999,
                             gae_lambda=0.98, ent_coef=0.01),
    "lunarlander-continuous": continuous_preset("gymnasium:LunarLanderContinuous-v3", num_envs=16,
                                                num_steps=1024, num_minibatches=256, update_epochs=4,
                                                gamma=0.999, gae_lambda=0.98, ent_coef=0.01),
    "halfcheetah": continuous_preset("gymnasium:HalfCheetah-v5"),
    "hopper": continuous_preset("gymnasium:Hopper-v5"),
    "walker2d": continuous_preset("gymnasium:Walker2d-v5"),
    "ant": continuous_preset("gymnasium:Ant-v5"),
}
# The preset an environment gets when none is named (ids without the gymnasium: prefix).
DEFAULT_PRESET = {"CartPole-v1": "cartpole-fast", "Pendulum-v1": "pendulum",
                  **{PRESETS[name].env_id.removeprefix(envs.registry.GYMNASIUM_PREFIX): name
                     for name in ("acrobot", "mountaincar", "mountaincar-continuous", "lunarlander",
                                  "lunarlander-continuous", "halfcheetah", "hopper", "walker2d", "ant")}}


def recipe_for(env_id):
    """``"continuous"`` for an environment with a Box action space, ``"discrete"`` otherwise (one copy of
    the environment is made to see)."""
    env = envs.make(env_id, num_envs=1)
    try:
        return "continuous" if isinstance(env.single_action_space, envs.Box) else "discrete"
    finally:
        env.close()


def choose_preset(env_id=None, name=None):
    """``(chosen, config)``: the named preset, else the environment's default preset, else the recipe of
    its action space, with ``env_id`` filled in (None: the preset's own, or CartPole-v1); ``chosen`` says
    which in words ("preset cartpole-fast", "continuous recipe").

    Ids of the form ``gymnasium:CartPole-v1`` share the native environment's presets.
    """
    if name is not None and name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    if env_id is None:
        env_id = PRESETS[name].env_id if name is not None else PPOConfig.env_id
    env_id = text(env_id, "env_id")
    name = name or DEFAULT_PRESET.get(env_id.removeprefix(envs.registry.GYMNASIUM_PREFIX))
    if name is not None:
        return f"preset {name}", replace(PRESETS[name], env_id=env_id)
    recipe = recipe_for(env_id)
    return f"{recipe} recipe", replace(RECIPES[recipe], env_id=env_id)


def preset_for(env_id, name=None):
    """The config of :func:`choose_preset`: the named preset (or the environment's default preset, or the
    recipe of its action space) with ``env_id`` filled in."""
    return choose_preset(env_id, name)[1]

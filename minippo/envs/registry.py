"""``make``: build a vector environment from its id.

Native ids (pure NumPy, vectorized): ``"CartPole-v1"``, ``"Pendulum-v1"``.  Any id prefixed with
``"gymnasium:"`` (``"gymnasium:Acrobot-v1"``) builds that gymnasium environment instead, with
same-step autoreset, behind the same interface (needs the optional gymnasium dependency).
"""
from minippo.envs.cartpole import CartPoleEnv
from minippo.envs.gymnasium_adapter import make_gymnasium
from minippo.envs.pendulum import PendulumEnv

NATIVE_ENVS = {"CartPole-v1": CartPoleEnv, "Pendulum-v1": PendulumEnv}
GYMNASIUM_PREFIX = "gymnasium:"


def make(id, num_envs=1, seed=None, **kwargs):  # noqa: A002 (gymnasium's name for it)
    """A vector environment of ``num_envs`` copies of environment ``id``.

    ``seed`` (None, an int >= 0 or a Generator) drives the first ``reset()``; ``kwargs`` go to the
    environment's constructor (e.g. ``max_episode_steps=200`` or Pendulum's ``g=9.81``).
    """
    if not isinstance(id, str):
        raise TypeError(f"id must be a string, got {type(id).__name__}")
    if id.startswith(GYMNASIUM_PREFIX):
        return make_gymnasium(id[len(GYMNASIUM_PREFIX):], num_envs=num_envs, seed=seed, **kwargs)
    if id not in NATIVE_ENVS:
        raise ValueError(
            f"unknown environment id {id!r}; known ids: {', '.join(NATIVE_ENVS)}, "
            f"or '{GYMNASIUM_PREFIX}<id>' for any gymnasium environment"
        )
    return NATIVE_ENVS[id](num_envs=num_envs, seed=seed, **kwargs)

"""The return of a policy on a vector environment, counted without bias toward short episodes."""
import numpy as np

from minippo.checks import integer_at_least
from minippo.rl.ppo import network_obs


def evaluate_policy(agent, env, rng, deterministic=False, max_steps=1_000_000):
    """The return of the first episode of each of ``env.num_envs`` sub-environments, (num_envs,).

    Counting only first episodes keeps the average unbiased (a fixed number of episodes collected
    in parallel would favour short ones).  An episode still running after ``max_steps`` steps (an
    environment without a time limit whose policy never ends it) is a RuntimeError, not a hang.
    """
    max_steps = integer_at_least(max_steps, "max_steps", 1)
    returns = np.full(env.num_envs, np.nan)
    obs, _ = env.reset()
    for _ in range(max_steps):
        if not np.isnan(returns).any():
            return returns
        actions, _, _ = agent.act(network_obs(agent, obs), rng, deterministic)
        obs, _, _, _, infos = env.step(actions)
        if infos:
            first = infos["_episode"] & np.isnan(returns)
            returns[first] = infos["episode"]["r"][first]
    if np.isnan(returns).any():
        running = np.flatnonzero(np.isnan(returns)).tolist()
        raise RuntimeError(f"the episodes of sub-environments {running} did not end within max_steps={max_steps} "
                           f"steps; give the environment a time limit or raise max_steps")
    return returns

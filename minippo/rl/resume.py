"""Saving a PPO run and continuing it (``Trainer.save`` / ``Trainer.load_state``), on any number of MPI ranks.

The file is a policy checkpoint -- what ``minippo evaluate --load`` and ``minippo.rl.ppo.load_policy`` read --
that also holds everything else the run needs to continue:

    params/...           the actor-critic's weights
    optimizer/...        Adam's step count and moments, one array per parameter (``m.<name>``, ``v.<name>``)
    extra["obs_rms"]     the observation statistics (``NormalizeObservation``; the same on every rank)
    extra["trainer"]     the history (every update's figures, every episode) and, of every rank the run ran
                         on, its environments' state, its action and minibatch-order generators and the
                         observations its next rollout starts from

**On as many ranks** the run continues bit-identically: each rank takes back its own part.

**On another number of ranks** (saved by ``mpiexec -n 2``, resumed in one process, or the reverse) it
continues the same run.  The weights, the optimiser, the running statistics, the counters and the history
are global and carry over as they are.  The environments -- ``num_envs`` in all whatever the number of
ranks, which must divide it -- are regrouped into the new ranks' shares in rank order, each with its state
and its running episode (:func:`minippo.envs.vector_env.state_share`).  The generators belong to ranks that
no longer exist, so each new rank seeds its own (its environments', its actions', its minibatch order's)
from the run's seed, its rank and the update the run continues at (``World.rank_seed(seed, resumed_at=)``):
the continued run is reproducible for a given N.  A gymnasium environment's state is never saved; its
episodes start anew in either case.
"""
import warnings
from dataclasses import asdict

import numpy as np

from minippo import envs, runs
from minippo.envs.vector_env import state_share
from minippo.envs.wrappers import find_wrapper
from minippo.nn.checkpoint import json_friendly, load_checkpoint, rng_from_state, rng_state, save_checkpoint
from minippo.rl.actor_critic import flat_views
from minippo.rl.ppo_config import PPOConfig

RESUMABLE_CHANGES = ("total_steps", "blas_threads")  # the settings a resumed run may change
OPTIMIZER_KEY = "parameters"  # Adam's one array: every parameter of the ActorCritic (ActorCritic.flat_params)


def optimizer_state(trainer):
    """The optimiser's state with one moment array per parameter, ``m.<name>`` and ``v.<name>`` (the layout
    of ``AdamW(agent.params, ...).state_dict()``), cut from its flat arrays."""
    flat = trainer.optimizer.state_dict()
    return {"step_count": flat["step_count"],
            **{f"{kind}.{name}": view for kind in "mv"
               for name, view in flat_views(flat[f"{kind}.{OPTIMIZER_KEY}"], trainer.agent.params).items()}}


def load_optimizer_state(trainer, state):
    """Restore :func:`optimizer_state`'s output (ValueError naming the keys that do not fit)."""
    params = trainer.agent.params
    expected = {"step_count"} | {f"{kind}.{name}" for kind in "mv" for name in params}
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    shapes = sorted(key for key in expected & set(state) - {"step_count"}
                    if np.shape(state[key]) != params[key[2:]].shape)
    if missing or unexpected or shapes:
        raise ValueError(f"cannot load optimizer state: missing {missing}, unexpected {unexpected}, "
                         f"wrong shape {shapes}")
    trainer.optimizer.load_state_dict({"step_count": state["step_count"], **{
        f"{kind}.{OPTIMIZER_KEY}": np.concatenate([np.ravel(state[f"{kind}.{name}"]) for name in params])
        for kind in "mv"}})


def innermost(env_state):
    """The state of the environment inside the wrappers' states (``{"env": ..., ...}``): None for gymnasium's."""
    while isinstance(env_state, dict) and "env" in env_state:
        env_state = env_state["env"]
    return env_state


def rank_state(trainer):
    """This rank's part of a checkpoint: its environments' state (None for gymnasium's), its action and
    shuffle generators and the observations its next rollout starts from (JSON-friendly)."""
    return {"env": trainer.env.state_dict(), "action_rng": rng_state(trainer.action_rng),
            "shuffle_rng": rng_state(trainer.shuffle_rng),
            "next_obs": None if trainer.next_obs is None else trainer.next_obs.tolist()}


def save_run(trainer, path):
    """Write ``trainer``'s run to ``path`` (the module docstring says what).  Under MPI every rank must call
    it (the ranks' parts are gathered); rank 0 writes."""
    ranks = trainer.world.gather_list([rank_state(trainer)])
    if not trainer.world.is_root:
        return
    normalizer = find_wrapper(trainer.env, envs.NormalizeObservation)
    obs_rms = None if normalizer is None else json_friendly(normalizer.obs_rms.state_dict())
    run = {"ranks": ranks, "history": json_friendly(asdict(trainer.history))}
    save_checkpoint(path, trainer.agent.params, asdict(trainer.config), optimizer_state(trainer), trainer.global_step,
                    trainer.action_rng, extra={"obs_rms": obs_rms, "trainer": run}, kind="ppo_policy")


def load_run(trainer, path):
    """Continue in ``trainer`` the run :func:`save_run` wrote to ``path``, on this trainer's number of ranks.

    The checkpoint's config must equal the trainer's except for RESUMABLE_CHANGES (a larger ``total_steps``
    extends a run; the learning-rate annealing then follows the new total).  On another number of ranks
    than the run was saved by, rank 0 warns in one line that the environments were regrouped and the
    random streams seeded anew (module docstring)."""
    path = str(path)
    state = load_checkpoint(path, kind="ppo_policy")
    run = state["extra"].get("trainer")
    if run is None:
        raise ValueError(f"checkpoint {path!r} holds a policy without its training state (written by an older "
                         "minippo), so its run cannot be resumed")
    try:
        saved = asdict(PPOConfig(**state["config"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {path!r}: its PPO config is invalid ({error})") from error
    runs.check_same_settings(saved, asdict(trainer.config), RESUMABLE_CHANGES, path)
    world, ranks, updates = trainer.world, run["ranks"], len(run["history"]["updates"])
    same_ranks = len(ranks) == world.size
    if same_ranks:
        mine = ranks[world.rank]
    else:  # this rank's share of every environment of the run, in rank order
        share = slice(world.rank * trainer.env.num_envs, (world.rank + 1) * trainer.env.num_envs)
        mine = {"env": state_share([rank["env"] for rank in ranks], world.rank, world.size),
                "next_obs": None if ranks[0]["next_obs"] is None else
                np.concatenate([rank["next_obs"] for rank in ranks])[share]}
    try:
        trainer.agent.load_state_dict(state["params"])
        load_optimizer_state(trainer, state["optimizer_state"])
        trainer.env.load_state_dict(mine["env"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path!r}: {error}") from error
    if same_ranks:
        trainer.action_rng = rng_from_state(mine["action_rng"])
        trainer.shuffle_rng = rng_from_state(mine["shuffle_rng"])
    else:
        trainer.seed_rank_streams(world.rank_seed(trainer.config.seed, resumed_at=updates))
        trainer.env.unwrapped.rng = np.random.default_rng(trainer.env_seed)
        if world.is_root:
            environments = "start new episodes (a gymnasium environment's state is not saved)" \
                if innermost(mine["env"]) is None else f"continue their episodes, {trainer.env.num_envs} per rank"
            warnings.warn(f"{path} was saved by {len(ranks)} MPI rank{'s' * (len(ranks) > 1)} and continues on "
                          f"{world.size}: its {trainer.config.num_envs} environments {environments}; the random "
                          f"streams start anew from (seed {trainer.config.seed}, rank, update {updates})", stacklevel=3)
    # (episodes of an environment whose state was not saved start anew: the first rollout resets it)
    trainer.next_obs = None if innermost(mine["env"]) is None or mine["next_obs"] is None else \
        np.array(mine["next_obs"], dtype=trainer.agent.dtype)
    trainer.global_step = state["step"]
    trainer.history.updates[:] = run["history"]["updates"]
    trainer.history.episodes[:] = [tuple(episode) for episode in run["history"]["episodes"]]

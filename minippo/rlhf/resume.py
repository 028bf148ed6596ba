"""Saving an RLHF run and continuing it bit-identically (``RLHFTrainer.save`` / ``RLHFTrainer.load_state``).

The file is a GPT checkpoint of the policy, with its tokenizer -- what ``minippo generate`` and
``minippo rlhf --policy`` read -- that also holds everything else the run needs to continue:

    params/...            the policy's weights
    state/critic.*        the separate critic's trunk (PPO with critic="separate")
    state/value_head.*    the value head (PPO)
    optimizer/...         AdamW's moments of all of them and its step count
    extra["rlhf"]         the config, the iterations done, the KL coefficient β, the sampling generator
                          of every MPI rank, and the SHA-256 of the reference model's weights
    extra[...]            the caller's own state (``minippo rlhf`` keeps its prompt generator and log rows)

The reference model is not saved: a resumed run is built from the same starting policy, and the digest
makes sure that it was.

A run continues on as many MPI ranks bit-identically, and on another number of ranks (``mpiexec -n 2``
saved it, one process resumes it, or the reverse) as the same run: the weights, the optimiser, β and the
counters are global and carry over, the prompt generator is the caller's (``minippo rlhf`` keeps one for
all ranks), and each rank's sampling generator, whose saved states belong to ranks that no longer exist,
is seeded anew from the run's seed, the rank and the iteration it continues at
(``World.rank_seed(seed, resumed_at=)``), so the continued run is reproducible for a given N.
"""
import warnings
from dataclasses import asdict

import numpy as np

from minippo.nn.checkpoint import (
    json_friendly,
    load_checkpoint,
    rng_from_state,
    rng_state,
    save_checkpoint,
    weights_digest,
)
from minippo.nn.module import unprefixed
from minippo.rlhf.config import RLHFConfig
from minippo.runs import check_same_settings
from minippo.text.gpt2 import tokenizer_record

OWN_ENTRIES = ("tokenizer", "rlhf")  # the entries of extra that are not the caller's


def config_record(config):
    """The config as a checkpoint records it: JSON-friendly, a Generator seed as None (its state is saved
    apart, as the trainer's generator)."""
    record = json_friendly(asdict(config))
    if isinstance(config.seed, np.random.Generator):
        record["seed"] = None
    return record


def save_run(trainer, path, extra=None):
    """Write ``trainer``'s run to ``path`` (see the module docstring); ``extra`` is a dict of the caller's
    JSON-friendly state.  Under MPI every rank must call it (the generators are gathered); rank 0 writes."""
    rngs = trainer.world.gather_list([rng_state(trainer.rng)])
    if not trainer.world.is_root:
        return
    others = {name: value for name, value in trainer.params.items() if not name.startswith("policy.")}
    run = {"config": config_record(trainer.config), "iterations_done": trainer.iterations_done,
           "beta": trainer.kl_controller.beta, "rngs": rngs, "reference": weights_digest(trainer.reference.params)}
    extra = {**json_friendly(extra or {}), "tokenizer": tokenizer_record(trainer.tokenizer), "rlhf": run}
    save_checkpoint(path, trainer.policy.params, trainer.policy.config.to_dict(), trainer.optimizer.state_dict(),
                    trainer.iterations_done, extra=extra, kind="gpt", state=others)


def load_run(trainer, path):
    """Continue in ``trainer`` the run :func:`save_run` wrote to ``path``; return the caller's ``extra``.

    ``trainer`` must have been built as the saved one was: the same config and the same starting policy (the
    reference); a ValueError says which differs.  On another number of MPI ranks than the run was saved by,
    rank 0 warns in one line that the sampling streams start anew (module docstring)."""
    path = str(path)
    state = load_checkpoint(path, kind="gpt")
    run = state["extra"].get("rlhf")
    if run is None:
        raise ValueError(f"checkpoint {path!r} holds a policy without an RLHF run's state, so it cannot be resumed "
                         f"(start a new run from it with --policy)")
    try:
        saved = config_record(RLHFConfig(**run["config"]))
    except (TypeError, ValueError) as error:
        raise ValueError(f"checkpoint {path!r}: its RLHF config is invalid ({error})") from error
    check_same_settings(saved, config_record(trainer.config), ("blas_threads",), path)
    if run["reference"] != weights_digest(trainer.reference.params):
        raise ValueError(f"checkpoint {path!r} continues a run that started from another policy; resume with the "
                         f"policy the run started from")
    weights = {"policy": state["params"], **{name: unprefixed(state["state"], name)
                                             for name in trainer.modules if name != "policy"}}
    try:
        for name, module in trainer.modules.items():
            module.load_state_dict(weights[name])
        trainer.optimizer.load_state_dict(state["optimizer_state"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path!r}: {error}") from error
    world, saved_ranks = trainer.world, len(run["rngs"])
    if saved_ranks == world.size:
        trainer.rng = rng_from_state(run["rngs"][world.rank])
    else:  # the saved generators belong to ranks that no longer exist (module docstring)
        trainer.rng = np.random.default_rng(world.rank_seed(trainer.config.seed, resumed_at=run["iterations_done"]))
        if world.is_root:
            warnings.warn(f"{path} was saved by {saved_ranks} MPI rank{'s' * (saved_ranks > 1)} and continues on "
                          f"{world.size}: the sampling streams start anew from (seed {trainer.config.seed}, rank, "
                          f"iteration {run['iterations_done']})", stacklevel=3)
    trainer.iterations_done, trainer.kl_controller.beta = run["iterations_done"], run["beta"]
    return {key: value for key, value in state["extra"].items() if key not in OWN_ENTRIES}

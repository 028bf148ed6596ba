"""Programs that tests/test_mpi.py runs in one process and under ``mpiexec -n 2``.

    python tests/mpi_programs.py <program> [OUT.npz]

Each program computes on its rank's share of one fixed global batch and rank 0 writes what the test
compares (one process: the whole batch) to OUT.npz.
"""
import functools
import itertools
import os
import signal
import sys

import numpy as np

from minippo import pretrain as pretrain_module
from minippo.distributed import world
from minippo.envs.wrappers import RunningMeanStd
from minippo.nn.gpt import GPT, GPTConfig
from minippo.nn.optim import clip_grad_norm
from minippo.pretrain import PretrainConfig, encode_documents, pretrain
from minippo.rewards.reward_model import RewardModel, train_reward_model
from minippo.rl.advantages import whiten
from minippo.rl.ppo import Trainer, ppo_loss_and_gradients
from minippo.rl.ppo_config import PPOConfig
from minippo.rl.rollout_buffer import Batch
from minippo.rlhf import trainer as rlhf_trainer
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.text.tokenizer import ByteTokenizer

BATCH, MINIBATCHES = 64, 4


def rank_rows(rows):
    """This rank's share of the global rows: within each minibatch-sized block, the rank's slice, so
    that global minibatch k is the union of the ranks' minibatches k."""
    comm = world()
    blocks = rows.reshape(MINIBATCHES, comm.size, -1, *rows.shape[1:])  # (M, N, B/(M N), ...)
    return blocks[:, comm.rank].reshape(-1, *rows.shape[1:])  # (B/N, ...)


def fixed_batch(dtype):
    """A global PPO batch of CartPole-shaped samples, the same in every process."""
    rng = np.random.default_rng(0)
    return Batch(rng.normal(size=(BATCH, 4)).astype(dtype), rng.integers(0, 2, BATCH),
                 rng.normal(-0.7, 0.1, BATCH).astype(dtype), rng.normal(size=BATCH).astype(dtype),
                 rng.normal(size=BATCH).astype(dtype), rng.normal(size=BATCH).astype(dtype))


def ppo_equivalence(out):
    """Six PPO optimiser steps (per-minibatch whitening, value clipping, gradient clipping) on the rank's
    share of fixed minibatches; the parameters and diagnostics after each."""
    config = PPOConfig(num_envs=4, num_steps=16, num_minibatches=MINIBATCHES, learning_rate=0.02,
                       max_grad_norm=0.5, dtype="float64", seed=3)
    trainer = Trainer(config)
    batch = Batch(*(rank_rows(array) for array in fixed_batch(np.float64)))
    size = len(batch.advantages) // MINIBATCHES
    results = {}
    for step in range(6):
        k = step % MINIBATCHES
        minibatch = Batch(*(array[k * size:(k + 1) * size] for array in batch))
        stats = trainer.gradient_step(ppo_loss_and_gradients, minibatch, config.learning_rate)
        for name in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "grad_norm"):
            results[f"{step}/{name}"] = stats[name]
    results.update({f"param/{name}": value for name, value in trainer.agent.params.items()})
    return results


def textbook_ppo_update(trainer, batch, lr):
    """``Trainer.ppo_update`` as first written, its twin: each epoch draws its shuffle, each minibatch
    gathers its own advantage statistics over the ranks (``whiten(world=)``), and each step averages its
    diagnostics along with its gradients, copied out of and back into every parameter's array."""
    config, agent = trainer.config, trainer.agent
    clipfracs, size = [], len(batch.advantages) // config.num_minibatches
    for _ in range(config.update_epochs):
        order = trainer.shuffle_rng.permutation(len(batch.advantages))
        for start in range(0, len(order), size):
            agent.zero_grad()
            stats = ppo_loss_and_gradients(agent, Batch(*(array[order[start:start + size]] for array in batch)),
                                           config, trainer.world)
            stats = trainer.world.average_gradients(agent.grads, stats)
            stats["grad_norm"] = clip_grad_norm(agent.grads, config.max_grad_norm)
            trainer.optimizer.step(lr)
            clipfracs.append(stats["clipfrac"])
        if config.target_kl is not None and stats["approx_kl"] > config.target_kl:
            break
    stats["clipfrac"] = float(np.mean(clipfracs))
    return stats


def ppo_update_twins(out):
    """Short CartPole runs (float32; with target_kl's early stop; without whitening) through
    ``Trainer.ppo_update`` and through :func:`textbook_ppo_update`: every diagnostic and parameter."""
    results = {}
    for name, extra in (("plain", {}), ("target_kl", {"target_kl": 2e-5}), ("no_norm", {"norm_adv": False})):
        config = PPOConfig(num_envs=8, num_steps=32, total_steps=8 * 32 * 3, seed=4, **extra)
        for variant in ("fast", "textbook"):
            trainer = Trainer(config)
            if variant == "textbook":
                trainer.ppo_update = functools.partial(textbook_ppo_update, trainer)
            steps = []
            step = trainer.optimizer.step
            trainer.optimizer.step = lambda lr: steps.append(lr) or step(lr)  # noqa: B023 (called in this loop)
            history = trainer.train()
            for key in history.updates[0]:
                if key not in ("time", "sps"):
                    results[f"{name}/{variant}/{key}"] = np.array([update[key] for update in history.updates])
            results.update({f"{name}/{variant}/param/{key}": value for key, value in trainer.agent.params.items()})
            results[f"{name}/{variant}/steps"] = len(steps)
    return results


def statistics(out):
    """Whitening, running mean/std merging and a short training run with normalisation wrappers."""
    comm = world()
    rng = np.random.default_rng(1)
    values, mask = rng.normal(2.0, 3.0, (8, 6)), rng.random((8, 6)) < 0.6
    observations = [rng.normal(size=(4, 3)) for _ in range(3)]
    share = slice(comm.rank * 8 // comm.size, (comm.rank + 1) * 8 // comm.size)
    results = {"whiten": comm.gather_rows(whiten(values[share], mask[share], world=comm)),
               "whiten_scale": comm.gather_rows(whiten(values[share], mask[share], shift_mean=False, world=comm))}
    lopsided = slice(0, 7) if comm.rank == 0 else slice(7, 7)  # rank 1 of 2 has no rows
    rows = {"float32": values.astype(np.float32), "int": rng.integers(-5, 5, (7, 2, 3)), "bool": mask}
    results.update({f"gathered_{name}": comm.gather_rows(array[lopsided]) for name, array in rows.items()})
    rows["values"], rows["empty_rows"] = values[share], np.zeros((len(values[share]), 0, 2))  # (rows of nothing)
    for name in ("values", "empty_rows"):
        results[f"gathered_{name}"] = comm.gather_rows(rows[name])
    each = comm.gather_rows_each([array[lopsided] for array in list(rows.values())[:3]]
                                 + [rows["values"], rows["empty_rows"]])  # mixed dtypes, row counts and shapes
    results.update({f"each_{name}": array for name, array in zip(rows, each)})
    results["mean_std_lopsided"] = np.array(comm.mean_std(values[lopsided]))
    groups = [values[lopsided, 0], values[share, 1], values[lopsided, 2].astype(np.float32)]
    results["mean_std_groups"] = np.array(comm.mean_std_groups(groups), dtype=np.float64)
    results["mean_std_groups_one_by_one"] = np.array([comm.mean_std(group) for group in groups], dtype=np.float64)
    columns = [values[share, k] for k in range(6)]  # one size and dtype: one pass for all (World.mean_std_groups)
    results["mean_std_columns"] = np.array(comm.mean_std_groups(columns))
    results["mean_std_columns_one_by_one"] = np.array(comm.mean_std_groups(columns + [columns[0][:1]])[:6])
    rms = RunningMeanStd((3,), world=comm)
    for batch in observations:
        rms.update(batch[comm.rank * 4 // comm.size:(comm.rank + 1) * 4 // comm.size])
    results.update(rms_mean=rms.mean, rms_var=rms.var, rms_count=rms.count)
    config = PPOConfig(env_id="Pendulum-v1", num_envs=4, num_steps=32, total_steps=256, num_minibatches=2,
                       update_epochs=2, normalize_obs=True, normalize_reward=True, dtype="float64")
    trainer = Trainer(config)
    history = trainer.train()
    comm.check_identical(trainer.agent.params, "the end")
    normalizer = trainer.env.env  # NormalizeReward(NormalizeObservation(Pendulum))
    results.update(obs_count=normalizer.obs_rms.count, return_count=trainer.env.return_rms.count,
                   updates=len(history.updates), global_step=trainer.global_step,
                   episodes=len(history.episodes))
    return results


def pretraining(out, steps=6, checkpoint_path=None, resume=False):
    """A few float64 GPT pretraining steps on documents of unequal lengths (so ranks hold unequal
    token counts); the losses and the parameters."""
    tokenizer = ByteTokenizer()
    lines = [("ab" * (3 + i % 5)) + " the end" * (i % 3) for i in range(12)]
    documents = encode_documents(lines, tokenizer, block_size=24)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16,
                          dtype="float64"), seed=5)
    # a constant learning rate after warmup, so that a 3-step run is the start of a 6-step one
    config = PretrainConfig(steps=steps, batch_size=4, learning_rate=1e-2, min_learning_rate=1e-2,
                            warmup_steps=1, log_every=2, checkpoint_every=3, seed=7)
    losses = pretrain(model, documents, config, tokenizer, checkpoint_path, resume, log=lambda line: None)
    return {"losses": np.array(losses), **{f"param/{name}": value for name, value in model.params.items()}}


def pretraining_fused(out):
    """:func:`pretraining` through GPT.loss, the path of vocabularies over FUSED_LOSS_MIN_VOCAB (each rank's
    loss and gradient scaled by its share of the tokens inside the fused LM head)."""
    pretrain_module.FUSED_LOSS_MIN_VOCAB = 0
    return pretraining(out)


def pretraining_first_half(out):
    """Three of the six steps of :func:`pretraining_resumed`, checkpointed next to ``out``."""
    return pretraining(out, steps=3, checkpoint_path=os.path.join(os.path.dirname(out), "checkpoint.npz"))


def pretraining_resumed(out):
    """Six steps, resumed from the checkpoint :func:`pretraining_first_half` wrote next to ``out``."""
    return pretraining(out, steps=6, checkpoint_path=os.path.join(os.path.dirname(out), "checkpoint.npz"),
                       resume=True)


def reward_model(out):
    """Four Bradley-Terry steps of a float64 reward model; the losses and the parameters."""
    trunk = GPT(GPTConfig(vocab_size=ByteTokenizer().vocab_size, block_size=48, n_layer=1, n_head=2, n_embd=16,
                          dtype="float64"), seed=2)
    model = RewardModel.from_policy(trunk, seed=3)
    pairs = [{"prompt": f"question {i}", "chosen": "thank you" + "!" * (i % 3), "rejected": "no" + "." * (i % 4)}
             for i in range(10)]
    losses = train_reward_model(model, pairs, steps=4, batch_size=4, learning_rate=1e-2, seed=4,
                                log=lambda line: None)
    params, _ = model.named_parameters()
    return {"losses": np.array(losses), **{f"param/{name}": value for name, value in params.items()}}


def rank_order(items, blocks):
    """``items`` reordered so that rank r's contiguous share holds the r-th N-th of each of ``blocks``
    equal blocks: global minibatch k is then the union of the ranks' minibatches k."""
    size = world().size
    order = np.arange(len(items)).reshape(blocks, size, -1).transpose(1, 0, 2).reshape(-1)  # (N, blocks, m/N)
    return [items[i] for i in order]


def rlhf(out):
    """Two float64 RLHF PPO iterations (adaptive KL, separate critic, four optimiser steps each) with the
    rollouts fixed: each is the same whole batch, sampled alike in every process, cut to the rank's
    prompts."""
    tokenizer = ByteTokenizer()
    policy = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                           dtype="float64"), seed=6)
    prompts = [f"Q{i} A:" for i in range(8)]
    sample, seeds = rlhf_trainer.generate_rollout, itertools.count()

    def fixed_rollout(policy, tokenizer, prompt_texts, max_new_tokens, temperature, rng):
        whole = sample(policy, tokenizer, prompts, max_new_tokens, temperature, np.random.default_rng(next(seeds)))
        return whole.rows(np.array([prompts.index(prompt) for prompt in prompt_texts]))

    def reward(prompt_texts, responses):
        return np.array([response.count("a") - 0.1 * len(response) for response in responses], dtype=np.float64)

    rlhf_trainer.generate_rollout = fixed_rollout
    config = RLHFConfig(batch_size=8, minibatch_size=2, update_epochs=1, max_new_tokens=6, learning_rate=3e-3,
                        kl_target=0.5, kl_horizon=10.0, init_kl_coef=0.3, seed=1)
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    results = {}
    for iteration in range(2):
        stats = trainer.iteration(rank_order(prompts, blocks=4))
        results.update({f"{iteration}/{name}": value for name, value in stats.items()
                        if not name.startswith(("time/", "policy/first_ratio"))})
    return {**results, **{f"param/{name}": value for name, value in trainer.params.items()}}


def ppo_run(out, updates, resume=False, save=False):
    """``updates`` PPO updates on 4 CartPole environments in all, float64, with both normalisation wrappers:
    resumed from, and saved to, ppo.npz next to ``out``.  What the resumed run starts from (gathered over the
    ranks: every environment's state, running episode and next observation) and what it ends with."""
    path = os.path.join(os.path.dirname(out), "ppo.npz")
    config = PPOConfig(num_envs=4, num_steps=16, total_steps=4 * 16 * updates, num_minibatches=2, update_epochs=2,
                       normalize_obs=True, normalize_reward=True, dtype="float64", seed=3,
                       anneal_lr=False)  # so that a 2-update run is the start of a 4-update one
    trainer, comm, results = Trainer(config), world(), {}
    if resume:
        trainer.load_state(path)
        env = trainer.env.unwrapped
        results = {f"start/{name}": comm.gather_rows(value).copy() for name, value in  # (copies: training moves them)
                   [("state", env.state.T), ("next_obs", trainer.next_obs), ("episode_lengths", env.episode_lengths),
                    ("discounted_returns", trainer.env.discounted_returns)]}
        results.update({
                        "start/global_step": trainer.global_step, "start/updates": len(trainer.history.updates),
                        **{f"start/param/{name}": value.copy() for name, value in trainer.agent.params.items()}})
    trainer.train()
    if save:
        trainer.save(path)
    return {**results, "losses": np.array([update["loss"] for update in trainer.history.updates]),
            "episodes": np.array(trainer.history.episodes), "global_step": trainer.global_step,
            **{f"param/{name}": value for name, value in trainer.agent.params.items()}}


def ppo_save(out):
    """Two updates, saved (:func:`ppo_run`)."""
    return ppo_run(out, 2, save=True)


def ppo_resume(out):
    """Four updates, the first two resumed (:func:`ppo_run`)."""
    return ppo_run(out, 4, resume=True)


def ppo_straight(out):
    """Four updates in one go (:func:`ppo_run`)."""
    return ppo_run(out, 4)


def rlhf_run(out, iterations, resume=False):
    """RLHF PPO iterations of a tiny float64 GPT on 4 prompts, sampled by each rank from its own stream:
    resumed from, or saved to, rlhf.npz next to ``out``; the parameters at the start and the end."""
    path = os.path.join(os.path.dirname(out), "rlhf.npz")
    tokenizer = ByteTokenizer()
    policy = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                           dtype="float64"), seed=6)
    config = RLHFConfig(batch_size=4, minibatch_size=2, update_epochs=1, max_new_tokens=6, learning_rate=3e-3,
                        kl_target=0.5, kl_horizon=10.0, init_kl_coef=0.3, seed=1)
    trainer = RLHFTrainer(policy, lambda prompts, responses: np.array([len(set(r)) for r in responses], float),
                          tokenizer, config)
    if resume:
        trainer.load_state(path)
    results = {"start/iterations": trainer.iterations_done, "start/beta": trainer.kl_controller.beta,
               **{f"start/param/{name}": value.copy() for name, value in trainer.params.items()}}
    for _ in range(iterations):
        trainer.iteration([f"Q{i} A:" for i in range(4)])
    if not resume:
        trainer.save(path)
    return {**results, "beta": trainer.kl_controller.beta, "iterations": trainer.iterations_done,
            **{f"param/{name}": value for name, value in trainer.params.items()}}


def rlhf_save(out):
    """One RLHF iteration, saved (:func:`rlhf_run`)."""
    return rlhf_run(out, 1)


def rlhf_resume(out):
    """One more RLHF iteration, resumed (:func:`rlhf_run`)."""
    return rlhf_run(out, 1, resume=True)


def fail(out):
    """Rank 1 raises while rank 0 waits in a collective."""
    comm = world()
    if comm.rank == 1:
        raise ValueError("rank 1 failed on purpose")
    comm.mean_std(np.ones(3))


def killed(out):
    """Rank 1 is killed (SIGKILL) while rank 0 waits in a collective."""
    comm = world()
    if comm.rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    comm.mean_std(np.ones(3))


def diverge(out):
    """Rank 1's parameters differ from rank 0's: the hash check must stop the run."""
    comm = world()
    trainer = Trainer(PPOConfig(num_envs=2, num_steps=4, num_minibatches=1))
    if comm.rank == 1:
        trainer.agent.params["actor.layers.0.bias"][0] += 1e-6
    comm.check_identical(trainer.agent.params, "update 3")


if __name__ == "__main__":
    program, out = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    results = globals()[program.replace("-", "_")](out)
    if out and world().is_root:
        np.savez(out, **results)

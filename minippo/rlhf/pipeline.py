"""The whole RLHF pipeline on the shipped corpus -- what ``minippo demo`` runs.

1. pretrain a tiny GPT policy on dialogues whose answers are mostly impolite;
2. train a reward model on preference pairs (polite ≻ impolite) and report held-out accuracy;
3. normalise the reward model on samples of the pretrained (reference) policy: mean 0, std 1;
4. run PPO against the reward model with a KL target;
5. compare before and after on held-out prompts: mean reward (in standard deviations of the
   reference policy's reward), KL to the reference, the fraction judged polite by the corpus rule,
   and sample responses.

Outputs in ``out_dir``: ``summary.json``, ``rlhf_log.csv`` (one row per PPO iteration), checkpoints of
the policy after PPO, the pretrained policy it started from (``base_policy.npz``) and the reward model,
and ``rlhf.png`` (reward and KL per iteration) when matplotlib is present.
"""
import json
import os
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

from minippo.atomic import atomic_write
from minippo.checks import check_settings, instance_of, integer, setting
from minippo.nn.checkpoint import save_checkpoint
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import PretrainConfig, encode_documents, pretrain
from minippo.rewards.reward_model import (
    RewardModel,
    normalize_under_policy,
    preference_accuracy,
    train_reward_model,
)
from minippo.rlhf.diagnostics import plot_curves, progress_line, write_csv
from minippo.rlhf.evaluation import score_responses
from minippo.rlhf.rollout import check_response_room
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.seeding import spawn_seeds
from minippo.text.corpus import (
    is_preferred,
    load_corpus,
    load_preferences,
    load_prompts,
)
from minippo.text.gpt2 import tokenizer_record
from minippo.text.template import Template
from minippo.text.tokenizer import ByteTokenizer


@dataclass
class DemoConfig:
    """Sizes and budgets of the demo; the defaults run in about 80 seconds on 2 cores.

    ``seed`` seeds every stage: each gets an independent stream derived from it
    (:func:`minippo.seeding.spawn_seeds`), and the ``seed`` fields of ``pretrain`` and ``rlhf`` are
    replaced by those derived seeds (the summary records the configuration actually run).
    """

    seed: int = setting(0, "seed of every stage", integer(0))
    n_layer: int = setting(2, "transformer blocks of the policy (checked by GPTConfig)")
    n_head: int = setting(4, "attention heads")
    n_embd: int = setting(96, "embedding width")
    block_size: int = setting(96, "context length")
    # a setting is a dataclasses.field, made fresh for each instance by its factory
    pretrain: PretrainConfig = setting(  # noqa: RUF009
        help="pretraining settings", check=instance_of(PretrainConfig, "a PretrainConfig"),
        factory=lambda: PretrainConfig(steps=800))
    reward_steps: int = setting(60, "reward-model training steps", integer(1))
    rlhf: RLHFConfig = setting(  # noqa: RUF009
        help="RL settings", check=instance_of(RLHFConfig, "an RLHFConfig"), factory=RLHFConfig)
    iterations: int = setting(30, "RL iterations", integer(1))
    # eval_samples >= 2: the reward model is normalised to the standard deviation of these samples
    eval_samples: int = setting(256, "held-out samples of the before/after evaluation", integer(2))

    def __post_init__(self):
        """Check the settings before any stage runs (the model sizes are checked by ``GPTConfig``, the
        pretraining and RL settings by ``PretrainConfig`` and ``RLHFConfig`` when they are made), and that
        the responses leave the prompts room in the context: before the minutes of pretraining."""
        check_settings(self)
        check_response_room(self.rlhf.max_new_tokens, self.block_size, prefix="rlhf_")


def evaluate_on_prompts(policy, reference, reward, tokenizer, prompts, config, seed):
    """Mean reward, mean KL(π ‖ π_ref) per response (Monte Carlo, Σ_t log π − log π_ref), the fraction
    of responses the corpus rule calls polite, and the samples themselves."""
    rollout, scores, kl = score_responses(policy, reference, reward, tokenizer, prompts, config.max_new_tokens,
                                          config.temperature, np.random.default_rng(seed))
    polite = np.mean([is_preferred(r) for r in rollout.responses])
    return {"reward": float(scores.mean()), "reward_std": float(scores.std()), "kl": float(kl.mean()),
            "polite_fraction": float(polite), "responses": rollout.responses, "scores": scores}


def run_demo(config=None, out_dir="runs/demo", log=print, tokenizer=None, run_log=None):
    """Run every stage and return the summary dict (also written to ``out_dir/summary.json``).

    ``tokenizer`` is the policy's (default: a :class:`~minippo.text.tokenizer.ByteTokenizer`); the
    checkpoints record it.  Each PPO iteration's statistics also go to ``run_log`` (a
    :class:`minippo.run_log.RunLog`) if given."""
    config = config or DemoConfig()
    started = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    tokenizer = tokenizer or ByteTokenizer()
    template = Template()  # the shipped corpus's "Q: {prompt} A: {response}"
    (init_seed, pretrain_seed, head_seed, pair_order_seed, calibration_seed, prompt_seed, rlhf_seed,
     evaluation_seed) = spawn_seeds(config.seed, 8)
    config = replace(config, pretrain=replace(config.pretrain, seed=pretrain_seed),
                     rlhf=replace(config.rlhf, seed=rlhf_seed))
    prompt_rng = np.random.default_rng(prompt_seed)  # which prompts calibrate the reward and train the policy

    log("== 1/4 pretraining the policy on the shipped dialogues ==")
    model_config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=config.block_size,
                             n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd)
    policy = GPT(model_config, seed=init_seed)
    documents = encode_documents(load_corpus(), tokenizer, model_config.block_size)
    pretrain(policy, documents, config.pretrain, tokenizer, log=log)

    log("== 2/4 training the reward model on preference pairs ==")
    reward_model = RewardModel.from_policy(policy, tokenizer, seed=head_seed, template=template)
    train_reward_model(reward_model, load_preferences("train"), steps=config.reward_steps, seed=pair_order_seed,
                       log=log)
    accuracy = preference_accuracy(reward_model, load_preferences("test"))
    log(f"reward model held-out preference accuracy: {accuracy:.3f}")
    train_prompts = [template.prompt_text(p) for p in load_prompts("train")]
    calibration = [train_prompts[i] for i in prompt_rng.integers(0, len(train_prompts), config.eval_samples)]
    normalize_under_policy(reward_model, policy, tokenizer, calibration, config.rlhf.max_new_tokens,
                           config.rlhf.temperature, calibration_seed)
    trainer = RLHFTrainer(policy, reward_model, tokenizer, config.rlhf)
    reference = trainer.reference

    test_prompts = [template.prompt_text(p) for p in load_prompts("test")]
    eval_prompts = [test_prompts[i % len(test_prompts)] for i in range(config.eval_samples)]
    before = evaluate_on_prompts(policy, reference, reward_model, tokenizer, eval_prompts, config.rlhf, evaluation_seed)
    log(f"before PPO: mean reward {before['reward']:+.3f} (std {before['reward_std']:.3f}), "
        f"polite {before['polite_fraction']:.1%}")

    log("== 3/4 PPO against the reward model ==")
    rows = []
    for iteration in range(1, config.iterations + 1):
        prompts = [train_prompts[i] for i in prompt_rng.integers(0, len(train_prompts),
                                                                config.rlhf.prompts_per_iteration)]
        stats = trainer.iteration(prompts)
        rows.append({"iteration": iteration, "kl_target": config.rlhf.kl_target, **stats})
        log(progress_line(iteration, config.iterations, stats))
        if run_log is not None:
            run_log.scalars(iteration, stats)

    log("== 4/4 evaluating on held-out prompts ==")
    after = evaluate_on_prompts(policy, reference, reward_model, tokenizer, eval_prompts, config.rlhf, evaluation_seed)
    improvement = (after["reward"] - before["reward"]) / max(before["reward_std"], 1e-12)
    standard_error = np.hypot(before["reward_std"], after["reward_std"]) / np.sqrt(config.eval_samples)
    log(f"{'':24s}{'before':>10s}{'after':>10s}")
    log(f"{'mean reward':24s}{before['reward']:>+10.3f}{after['reward']:>+10.3f}")
    log(f"{'KL to reference':24s}{before['kl']:>10.2f}{after['kl']:>10.2f}")
    log(f"{'polite (corpus rule)':24s}{before['polite_fraction']:>10.1%}{after['polite_fraction']:>10.1%}")
    log(f"reward rose by {improvement:.2f} reference standard deviations "
        f"({(after['reward'] - before['reward']) / standard_error:.1f} standard errors)")
    log("sample responses (held-out prompts):")
    for prompt, old, new in list(zip(eval_prompts, before["responses"], after["responses"]))[:5]:
        log(f"  {prompt}\n    before: {old}\n    after:  {new}")

    write_csv(rows, os.path.join(out_dir, "rlhf_log.csv"))
    plotted = plot_curves(rows, os.path.join(out_dir, "rlhf.png"), "mean reward (std units)", "PPO iteration",
                          rows[0]["kl_target"])
    recorded = {"tokenizer": tokenizer_record(tokenizer), "template": template.text}
    save_checkpoint(os.path.join(out_dir, "policy.npz"), policy.params, model_config.to_dict(), extra=recorded,
                    kind="gpt")
    reward_model.save(os.path.join(out_dir, "reward_model.npz"))
    save_checkpoint(os.path.join(out_dir, "base_policy.npz"), reference.params, model_config.to_dict(),
                    extra=recorded, kind="gpt")  # the pretrained start: DPO's or another run's
    summary = {
        "reward_before": before["reward"], "reward_after": after["reward"],
        "reward_std_before": before["reward_std"], "improvement_in_std": improvement,
        "kl": after["kl"], "kl_target": config.rlhf.kl_target,
        "reward_model_accuracy": accuracy,
        "polite_before": before["polite_fraction"], "polite_after": after["polite_fraction"],
        "seconds": time.perf_counter() - started,
        "config": asdict(config),
    }
    with atomic_write(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as file:
        json.dump(summary, file, indent=2)
    log(f"wrote {out_dir}/summary.json, rlhf_log.csv{', rlhf.png' if plotted else ''}; "
        f"total {summary['seconds']:.0f}s")
    return summary

"""``minippo rlhf``: PPO, REINFORCE, RLOO or GRPO on your own policy checkpoint against a reward model or a rule.

OUT/policy.npz is the trained policy and the whole run: ``--resume OUT/policy.npz`` (with the same options)
continues it bit-identically, and Ctrl-C saves it and prints that command (``minippo.runs``).
"""
import json
import os
from dataclasses import dataclass

import numpy as np

from minippo import runs
from minippo.checks import integer, setting
from minippo.commands import options
from minippo.commands.evaluate import add_rlhf_evaluation_options, rlhf_evaluation
from minippo.commands.models import (
    add_template_option,
    command_template,
    load_policy_and_reward,
    policy_template,
    reward_template,
)
from minippo.nn.checkpoint import rng_from_state, rng_state
from minippo.progress import Progress, format_duration
from minippo.rlhf.diagnostics import SampleLog, progress_line, write_csv
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.run_log import RunLog, add_tensorboard_option, samples_markdown
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_in_tokens, model_parameters, rlhf_memory
from minippo.text.corpus import load_prompts
from minippo.text.files import read_text


def read_prompts(path):
    """The prompts of a file, one per line as written, or the shipped training prompts (raw: rlhf lays them out
    with its template; generate samples from them as they are)."""
    if path is None:
        return load_prompts("train")
    prompts = [line for line in read_text(path).split("\n") if line.strip()]
    if not prompts:
        raise ValueError(f"{path}: no prompts found (one prompt per line)")
    return prompts


@dataclass
class RLHFRun:
    """The settings of ``minippo rlhf`` besides the trainer's (:class:`RLHFConfig`)."""

    iterations: int = setting(40, "RL iterations", integer(1))
    seed: int = setting(0, "seed of the run: the trainer's sampling and the prompt order derive from it", integer(0))
    samples_every: int = setting(0, "every K iterations, append that iteration's responses and rewards to "
                                 "samples.jsonl in --out (and to TensorBoard); 0: off", integer(0))


def register(subparsers):
    parser = subparsers.add_parser(
        "rlhf",
        help="fine-tune a policy checkpoint with PPO/REINFORCE/RLOO/GRPO against a reward",
        description="RL fine-tuning of a GPT checkpoint (from `minippo pretrain` or `minippo demo`) with a "
        "KL penalty to its starting point. The policy and a reward model may also be Hugging Face GPT-2 "
        "directories. The reward is a reward-model checkpoint (*.npz, from `minippo reward-model`) or a "
        "rule: bleu:REFS, rouge:REFS, keyword:W1,W2, length:N. Every RLHFConfig field is an option; the "
        "settings run with are written to --out as config.json, which --config reads back.",
    )
    parser.add_argument("--policy", required=True, help="policy checkpoint (.npz) or Hugging Face GPT-2 directory")
    parser.add_argument("--reward", required=True,
                        help="reward-model checkpoint (.npz), Hugging Face reward-model directory, or rule spec")
    parser.add_argument("--prompts", help="prompt file, one raw prompt per line, laid out by the template "
                        "(default: shipped prompts)")
    add_template_option(parser)
    parser.add_argument("--out", default="runs/rlhf", help="output directory (default: runs/rlhf)")
    options.add_config_option(parser)
    options.add_setting_options(parser, RLHFRun())
    options.add_setting_options(parser, RLHFConfig(), skip=("seed",), aliases={"learning_rate": ["--lr"]})
    parser.add_argument("--fixed-kl", type=float, metavar="BETA",
                        help="a fixed β instead of adaptive KL: --init-kl-coef BETA --kl-target none (grpo: β of "
                        "the KL term in the loss; 0: no reference model)")
    add_tensorboard_option(parser)
    runs.add_run_options(parser, unit="iterations")
    add_rlhf_evaluation_options(parser)
    parser.set_defaults(func=run)


def settings_from_args(args):
    """``(run, config)``: the defaults, then the ``--config`` file, then the options given (``--fixed-kl`` as
    the two settings it stands for); the trainer's seed is derived from the run's."""
    chosen = options.chosen_settings(args)
    if args.fixed_kl is not None:
        chosen.update(init_kl_coef=args.fixed_kl, kl_target=None)
    run_settings = options.apply_settings(RLHFRun(), chosen)
    rlhf_seed = spawn_seeds(run_settings.seed, 2)[0]  # sampling in the trainer; the prompts' stream is the other
    return run_settings, options.apply_settings(RLHFConfig(seed=rlhf_seed), chosen, skip=("seed",))


def run(args):
    run_settings, config = settings_from_args(args)
    prompt_seed = spawn_seeds(run_settings.seed, 2)[1]
    paths = {name: os.path.join(args.out, name)
             for name in ("policy.npz", "rlhf_log.csv", "samples.jsonl", options.CONFIG_NAME)}
    runs.check_outputs(args, directories=[(args.out, "--out")], run_files=[(path, "--out") for path in paths.values()])
    policy, tokenizer, reward = load_policy_and_reward(args.policy, args.reward)
    template = command_template(args.template, [(policy_template(args.policy), args.policy),
                                                reward_template(reward, args.reward)])
    prompts = [template.prompt_text(prompt) for prompt in read_prompts(args.prompts)]
    check_memory(rlhf_memory, {"--batch-size": config.batch_size, "--minibatch-size": config.minibatch_size,
                               "--max-new-tokens": config.max_new_tokens},
                 {"model": gpt_sizes(policy.config), "prompt_tokens": longest_in_tokens(tokenizer, prompts),
                  "frozen_parameters": policy.num_parameters() + model_parameters(reward),
                  "separate_critic": config.critic == "separate"})
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    evaluation = rlhf_evaluation(args, trainer, template, run_settings.seed)  # None without --eval-every
    rng = np.random.default_rng(prompt_seed)  # the same prompts on every rank; each takes its share
    samples = SampleLog(paths["samples.jsonl"])
    rows = []
    if args.resume:
        rows, rng = resume(trainer, args.resume, samples)
        if evaluation is not None:  # the best of the evaluations so far carries on
            evaluation.tracker.replay([row["iteration"] for row in rows], rows)
        print(f"resumed from {args.resume} at iteration {trainer.iterations_done}")
    settings = {**options.setting_values(run_settings), **options.setting_values(config, skip=("seed",))}
    if trainer.world.is_root:
        options.write_config(paths[options.CONFIG_NAME], settings)
    run_log = RunLog(args.tensorboard if trainer.world.is_root else None, settings)
    iterations = run_settings.iterations
    print(f"{config.algo}: {iterations} iterations of {config.batch_size} responses, {trainer.world.describe()}")

    def save(path):  # collective under MPI
        trainer.save(path, extra={"prompt_rng": rng_state(rng), "rows": rows, "template": template.text})

    progress = Progress(iterations, "iterations", start=trainer.iterations_done)  # for the ETA
    with runs.Interrupt() as interrupt:
        for iteration in range(trainer.iterations_done + 1, iterations + 1):
            stats = trainer.iteration([prompts[i] for i in rng.integers(0, len(prompts),
                                                                        config.prompts_per_iteration)])
            rows.append({"iteration": iteration, **stats})
            print(f"{progress_line(iteration, iterations, stats)}  ETA {format_duration(progress.eta(iteration))}")
            if run_settings.samples_every and iteration % run_settings.samples_every == 0 and trainer.world.is_root:
                samples.add(iteration, trainer.last_samples)  # rank 0's share of the responses
                run_log.text("samples", iteration, samples_markdown(trainer.last_samples))
            reached_target = evaluation is not None and evaluation(iteration, rows[-1])  # adds eval/* to the row
            run_log.scalars(iteration, rows[-1])
            runs.save_periodic(save, paths["policy.npz"], iteration, args.save_every, args.keep)
            if interrupt.any_rank(trainer.world):
                save(paths["policy.npz"])
                run_log.close()
                return runs.interrupted(args, f"iteration {iteration}", paths["policy.npz"])
            if reached_target:
                break
        save(paths["policy.npz"])  # (a Ctrl-C now waits for the checkpoint)
    run_log.close()
    if evaluation is not None:
        print(evaluation.tracker.summary())
    if not trainer.world.is_root:  # the other ranks hold the same policy and figures
        return
    write_csv(rows, paths["rlhf_log.csv"])
    print(f"wrote {paths['policy.npz']} and {paths['rlhf_log.csv']}")


def resume(trainer, checkpoint, samples):
    """Continue in ``trainer`` the run saved in ``checkpoint``; return its log rows and prompt generator,
    and keep in ``samples`` the lines of samples.jsonl the run had written up to there."""
    extra = trainer.load_state(checkpoint)
    if not {"prompt_rng", "rows"} <= set(extra):
        raise ValueError(f"checkpoint {checkpoint!r} was not written by `minippo rlhf` (it lacks the prompt "
                         f"order and the log)")
    if os.path.exists(samples.path):
        lines = read_text(samples.path).splitlines()
        samples.lines = [line for line in lines if json.loads(line)["iteration"] <= trainer.iterations_done]
    return extra["rows"], rng_from_state(extra["prompt_rng"])

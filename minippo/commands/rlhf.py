"""``minippo rlhf``: PPO, REINFORCE, RLOO or GRPO on your own policy checkpoint against a reward model or a rule.

OUT/policy.npz is the trained policy and the whole run: ``--resume OUT/policy.npz`` (with the same options)
continues it bit-identically, and Ctrl-C saves it and prints that command (``minippo.runs``).
"""
import dataclasses
import json
import os

import numpy as np

from minippo import runs
from minippo.commands import integer_option
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
from minippo.rl.advantages import SCALE_REWARDS
from minippo.rl.kl import KL_ESTIMATORS
from minippo.rl.losses import LOSS_TYPES
from minippo.rlhf.diagnostics import SampleLog, progress_line, write_csv
from minippo.rlhf.trainer import RLHF_ALGORITHMS, RLHFConfig, RLHFTrainer
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


HELP = {spec.name: spec.metadata["help"] for spec in dataclasses.fields(RLHFConfig)}


def register(subparsers):
    defaults = RLHFConfig()
    parser = subparsers.add_parser(
        "rlhf",
        help="fine-tune a policy checkpoint with PPO/REINFORCE/RLOO/GRPO against a reward",
        description="RL fine-tuning of a GPT checkpoint (from `minippo pretrain` or `minippo demo`) with a "
        "KL penalty to its starting point. The policy and a reward model may also be Hugging Face GPT-2 "
        "directories. The reward is a reward-model checkpoint (*.npz, from `minippo reward-model`) or a "
        "rule: bleu:REFS, rouge:REFS, keyword:W1,W2, length:N.",
    )
    parser.add_argument("--policy", required=True, help="policy checkpoint (.npz) or Hugging Face GPT-2 directory")
    parser.add_argument("--reward", required=True,
                        help="reward-model checkpoint (.npz), Hugging Face reward-model directory, or rule spec")
    parser.add_argument("--algo", choices=RLHF_ALGORITHMS, default=defaults.algo, help="algorithm (default: ppo)")
    parser.add_argument("--prompts", help="prompt file, one raw prompt per line, formatted by the template "
                        "(default: shipped prompts)")
    add_template_option(parser)
    parser.add_argument("--iterations", type=integer_option(1), default=40, help="iterations (default: 40)")
    parser.add_argument("--batch-size", type=integer_option(1), default=defaults.batch_size,
                        help=f"responses per iteration (default: {defaults.batch_size})")
    parser.add_argument("--minibatch-size", type=integer_option(1), default=defaults.minibatch_size,
                        help=f"responses per gradient step; must divide --batch-size "
                             f"(default: {defaults.minibatch_size})")
    parser.add_argument("--max-new-tokens", type=integer_option(1), default=defaults.max_new_tokens,
                        help="response length limit")
    parser.add_argument("--temperature", type=float, default=defaults.temperature, help="sampling temperature")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate, help="learning rate")
    parser.add_argument("--kl-target", type=float, default=defaults.kl_target,
                        help=f"adaptive-KL target in nats per response (default: {defaults.kl_target})")
    parser.add_argument("--fixed-kl", type=float, default=None,
                        help="use this fixed β instead of adaptive KL (grpo: β of the KL term in the loss; 0: "
                             "no reference model)")
    parser.add_argument("--critic", choices=("shared", "separate"), default=defaults.critic, help="critic trunk")
    parser.add_argument("--num-generations", type=integer_option(1), default=defaults.num_generations,
                        help=f"{HELP['num_generations']} (default: {defaults.num_generations})")
    parser.add_argument("--update-epochs", type=integer_option(1), default=defaults.update_epochs,
                        help=f"{HELP['update_epochs']} (default: {defaults.update_epochs})")
    parser.add_argument("--clip-coef", type=float, default=defaults.clip_coef,
                        help=f"{HELP['clip_coef']} (default: {defaults.clip_coef})")
    parser.add_argument("--clip-coef-high", type=float, default=None, help=HELP["clip_coef_high"])
    parser.add_argument("--kl-estimator", choices=KL_ESTIMATORS, default=None,
                        help=f"{HELP['kl_estimator']} (default: k3 for grpo, k1 otherwise)")
    parser.add_argument("--scale-rewards", choices=SCALE_REWARDS, default=defaults.scale_rewards,
                        help=f"{HELP['scale_rewards']} (default: {defaults.scale_rewards})")
    parser.add_argument("--loss-type", choices=LOSS_TYPES, default=None,
                        help=f"{HELP['loss_type']} (default: grpo for grpo, dapo otherwise)")
    parser.add_argument("--missing-eos-penalty", type=float, default=None, help=HELP["missing_eos_penalty"])
    parser.add_argument("--mask-truncated-completions", action="store_true", help=HELP["mask_truncated_completions"])
    parser.add_argument("--dynamic-sampling-tries", type=integer_option(0), default=0,
                        help=HELP["dynamic_sampling_tries"])
    parser.add_argument("--samples-every", type=integer_option(0), default=0, metavar="K",
                        help="every K iterations, append that iteration's responses and rewards to samples.jsonl "
                             "in --out (default: 0, off)")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.add_argument("--out", default="runs/rlhf", help="output directory (default: runs/rlhf)")
    runs.add_run_options(parser, unit="iterations")
    add_rlhf_evaluation_options(parser)
    parser.set_defaults(func=run)


def run(args):
    rlhf_seed, prompt_seed = spawn_seeds(args.seed, 2)  # sampling in the trainer, picking prompts here
    config = RLHFConfig(algo=args.algo, batch_size=args.batch_size, minibatch_size=args.minibatch_size,
                        max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                        learning_rate=args.learning_rate,
                        critic=args.critic, seed=rlhf_seed, num_generations=args.num_generations,
                        update_epochs=args.update_epochs, clip_coef=args.clip_coef,
                        clip_coef_high=args.clip_coef_high, kl_estimator=args.kl_estimator,
                        scale_rewards=args.scale_rewards, loss_type=args.loss_type,
                        missing_eos_penalty=args.missing_eos_penalty,
                        mask_truncated_completions=args.mask_truncated_completions,
                        dynamic_sampling_tries=args.dynamic_sampling_tries,
                        kl_target=None if args.fixed_kl is not None else args.kl_target,
                        init_kl_coef=args.fixed_kl if args.fixed_kl is not None else RLHFConfig.init_kl_coef)
    paths = {name: os.path.join(args.out, name) for name in ("policy.npz", "rlhf_log.csv", "samples.jsonl")}
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
    evaluation = rlhf_evaluation(args, trainer, template)  # None without --eval-every
    rng = np.random.default_rng(prompt_seed)  # the same prompts on every rank; each takes its share
    samples = SampleLog(paths["samples.jsonl"])
    rows = []
    if args.resume:
        rows, rng = resume(trainer, args.resume, samples)
        if evaluation is not None:  # the best of the evaluations so far carries on
            evaluation.tracker.replay([row["iteration"] for row in rows], rows)
        print(f"resumed from {args.resume} at iteration {trainer.iterations_done}")
    print(f"{config.algo}: {args.iterations} iterations of {config.batch_size} responses, "
          f"{trainer.world.describe()}")

    def save(path):  # collective under MPI
        trainer.save(path, extra={"prompt_rng": rng_state(rng), "rows": rows, "template": template.text})

    progress = Progress(args.iterations, "iterations", start=trainer.iterations_done)  # for the ETA
    with runs.Interrupt() as interrupt:
        for iteration in range(trainer.iterations_done + 1, args.iterations + 1):
            stats = trainer.iteration([prompts[i] for i in rng.integers(0, len(prompts),
                                                                        config.prompts_per_iteration)])
            rows.append({"iteration": iteration, **stats})
            print(f"{progress_line(iteration, args.iterations, stats)}  ETA {format_duration(progress.eta(iteration))}")
            if args.samples_every and iteration % args.samples_every == 0 and trainer.world.is_root:
                samples.add(iteration, trainer.last_samples)  # rank 0's share of the responses
            reached_target = evaluation is not None and evaluation(iteration, rows[-1])  # adds eval/* to the row
            runs.save_periodic(save, paths["policy.npz"], iteration, args.save_every, args.keep)
            if interrupt.any_rank(trainer.world):
                save(paths["policy.npz"])
                return runs.interrupted(args, f"iteration {iteration}", paths["policy.npz"])
            if reached_target:
                break
        save(paths["policy.npz"])  # (a Ctrl-C now waits for the checkpoint)
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

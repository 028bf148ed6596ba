"""``minippo rlhf``: PPO, REINFORCE, RLOO or GRPO on your own policy checkpoint against a reward model or a rule."""
import os
from dataclasses import dataclass

import numpy as np

from minippo.checks import integer, setting
from minippo.commands import options
from minippo.commands.models import load_policy_and_tokenizer, load_reward
from minippo.nn.checkpoint import save_checkpoint
from minippo.rlhf.diagnostics import SampleLog, progress_line, write_csv
from minippo.rlhf.trainer import RLHFConfig, RLHFTrainer
from minippo.run_log import RunLog, add_tensorboard_option, samples_markdown
from minippo.seeding import spawn_seeds
from minippo.text.corpus import format_prompt, load_prompts
from minippo.text.files import read_text
from minippo.text.gpt2 import tokenizer_record


def read_prompts(path):
    """Prompts from a file (one per line, used verbatim), or the shipped training prompts as "Q: ... A:"."""
    if path is None:
        return [format_prompt(p) for p in load_prompts("train")]
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
    parser.add_argument("--prompts", help="prompt file, one per line, used verbatim (default: shipped prompts)")
    parser.add_argument("--out", default="runs/rlhf", help="output directory (default: runs/rlhf)")
    options.add_config_option(parser)
    options.add_setting_options(parser, RLHFRun())
    options.add_setting_options(parser, RLHFConfig(), skip=("seed",), aliases={"learning_rate": ["--lr"]})
    parser.add_argument("--fixed-kl", type=float, metavar="BETA",
                        help="a fixed β instead of adaptive KL: --init-kl-coef BETA --kl-target none (grpo: β of "
                        "the KL term in the loss; 0: no reference model)")
    add_tensorboard_option(parser)
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
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    reward = load_reward(args.reward)
    prompts = read_prompts(args.prompts)
    trainer = RLHFTrainer(policy, reward, tokenizer, config)
    rng = np.random.default_rng(prompt_seed)  # the same prompts on every rank; each takes its share
    os.makedirs(args.out, exist_ok=True)
    samples = SampleLog(os.path.join(args.out, "samples.jsonl"))
    settings = {**options.setting_values(run_settings), **options.setting_values(config, skip=("seed",))}
    if trainer.world.is_root:
        options.write_config(os.path.join(args.out, options.CONFIG_NAME), settings)
    run_log = RunLog(args.tensorboard if trainer.world.is_root else None, settings)
    iterations = run_settings.iterations
    print(f"{config.algo}: {iterations} iterations of {config.batch_size} responses, {trainer.world.describe()}")
    rows = []
    for iteration in range(1, iterations + 1):
        stats = trainer.iteration([prompts[i] for i in rng.integers(0, len(prompts), config.prompts_per_iteration)])
        rows.append({"iteration": iteration, **stats})
        print(progress_line(iteration, iterations, stats))
        run_log.scalars(iteration, stats)
        if run_settings.samples_every and iteration % run_settings.samples_every == 0 and trainer.world.is_root:
            samples.add(iteration, trainer.last_samples)  # rank 0's share of the responses
            run_log.text("samples", iteration, samples_markdown(trainer.last_samples))
    run_log.close()
    if not trainer.world.is_root:  # the other ranks hold the same policy and figures
        return
    write_csv(rows, os.path.join(args.out, "rlhf_log.csv"))
    path = os.path.join(args.out, "policy.npz")
    save_checkpoint(path, policy.params, policy.config.to_dict(), extra={"tokenizer": tokenizer_record(tokenizer)},
                    kind="gpt")
    print(f"wrote {path} and {os.path.join(args.out, 'rlhf_log.csv')}")

"""``minippo dpo``: direct preference optimisation of a policy checkpoint on preference pairs.

OUT/policy.npz is the trained policy and the whole run: ``--resume OUT/policy.npz`` (with the same options)
continues it bit-identically, and Ctrl-C or SIGTERM saves it and prints that command (``minippo.runs``).
"""
import os
from dataclasses import dataclass

from minippo import runs
from minippo.checks import integer, open_fraction, setting
from minippo.commands import options, preference_split
from minippo.commands.models import add_template_option, command_template, load_policy_and_tokenizer, policy_template
from minippo.rlhf.diagnostics import write_csv
from minippo.rlhf.dpo import DPOConfig, DPOTrainer
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_pair_tokens, pair_memory
from minippo.text.gpt2 import tokenizer_record


@dataclass
class DPORun:
    """The settings of ``minippo dpo`` besides the trainer's (:class:`DPOConfig`)."""

    seed: int = setting(0, "seed of the run: the held-out split and the batch order derive from it", integer(0))
    test_fraction: float = setting(0.15, "fraction of the prompts of --data held out, with all their pairs",
                                   open_fraction)


def register(subparsers):
    parser = subparsers.add_parser(
        "dpo",
        help="fine-tune a policy checkpoint on preference pairs with DPO (no reward model, no sampling)",
        description="Direct preference optimisation: minimise -log σ(β[(log π(chosen) - log π_ref(chosen)) - "
        "(log π(rejected) - log π_ref(rejected))]) (or its robust, ipo or hinge variant) over pairs, "
        "with the starting policy as the frozen reference. Pairs are JSONL lines {\"prompt\": ..., "
        "\"chosen\": ..., \"rejected\": ...}; a random --test-fraction of the prompts is held out. Writes policy.npz "
        "(loadable by `minippo rlhf` and `minippo generate`, and by --resume, which continues the run), "
        "dpo_log.csv and config.json (the settings, which --config reads back) to --out. Ctrl-C saves the run "
        "and prints the command that resumes it.",
    )
    parser.add_argument("--policy", required=True,
                        help="policy checkpoint (.npz) or Hugging Face GPT-2 directory: the start and the reference")
    parser.add_argument("--data", help="preference pairs, JSONL (default: the shipped pairs, with their test split)")
    parser.add_argument("--out", default="runs/dpo", help="output directory (default: runs/dpo)")
    options.add_config_option(parser)
    options.add_setting_options(parser, DPORun())
    options.add_setting_options(parser, DPOConfig(), skip=("seed",), aliases={"learning_rate": ["--lr"]})
    add_template_option(parser)
    runs.add_run_options(parser, unit="steps")
    parser.set_defaults(func=run)


def settings_from_args(args):
    """``(run, config)``: the defaults, then the ``--config`` file, then the options given; without a
    minimum learning rate of its own, a learning rate below the default minimum is also the minimum."""
    chosen = options.follow_learning_rate(options.chosen_settings(args), DPOConfig)
    run_settings = options.apply_settings(DPORun(), chosen)
    order_seed = spawn_seeds(run_settings.seed, 2)[1]  # the batch order; the held-out split's is the other
    return run_settings, options.apply_settings(DPOConfig(seed=order_seed), chosen, skip=("seed",))


def run(args):
    run_settings, config = settings_from_args(args)
    split_seed = spawn_seeds(run_settings.seed, 2)[0]
    train, test = preference_split(args.data, run_settings.test_fraction, split_seed)
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    template = command_template(args.template, [(policy_template(args.policy), args.policy)])
    paths = {name: os.path.join(args.out, name) for name in ("policy.npz", "dpo_log.csv", options.CONFIG_NAME)}
    runs.check_outputs(args, directories=[(args.out, "--out")], run_files=[(path, "--out") for path in paths.values()])
    check_memory(pair_memory, {"--batch-size": config.batch_size},
                 {"model": gpt_sizes(policy.config), "tokens": longest_pair_tokens(tokenizer, train), "reference": 1})
    options.write_config(paths[options.CONFIG_NAME],
                         {**options.setting_values(run_settings), **options.setting_values(config, skip=("seed",))})
    trainer = DPOTrainer(policy, tokenizer, train, config, test_pairs=test, template=template)
    if args.resume:
        trainer.load_state(args.resume)
        print(f"resumed from {args.resume} at step {trainer.steps_done}")

    def save(path):
        trainer.save(path, extra={"tokenizer": tokenizer_record(tokenizer), "template": template.text})

    with runs.Interrupt() as interrupt:
        while trainer.steps_done < config.steps:
            trainer.logged_step()
            runs.save_periodic(save, paths["policy.npz"], trainer.steps_done, args.save_every, args.keep)
            if interrupt.requested:  # (dpo runs in one process)
                save(paths["policy.npz"])
                return runs.interrupted(args, f"step {trainer.steps_done}", paths["policy.npz"])
        save(paths["policy.npz"])  # (a Ctrl-C now waits for the checkpoint)
    write_csv(trainer.rows, paths["dpo_log.csv"])
    print(f"held-out preference accuracy (implicit reward): {trainer.rows[-1]['test_accuracy']:.3f} on "
          f"{len(test)} pairs")
    print(f"wrote {paths['policy.npz']} and {paths['dpo_log.csv']}")

"""``minippo demo``: the whole RLHF pipeline on the shipped corpus, end to end (the README's main command)."""
import os

from minippo.commands import options
from minippo.commands.tokenizer import add_tokenizer_option, load_tokenizer
from minippo.rlhf.pipeline import DemoConfig, run_demo
from minippo.run_log import RunLog, add_tensorboard_option

SKIPPED = ("pretrain_seed", "rlhf_seed")  # derived from seed (DemoConfig's docstring)


def register(subparsers):
    parser = subparsers.add_parser(
        "demo",
        help="run the whole RLHF pipeline: pretrain, reward model, PPO, before/after table",
        description="Pretrain a tiny GPT on the shipped dialogues, train a reward model on preference "
        "pairs, run PPO against it with a KL target, and print a before/after table on held-out prompts. "
        "Writes summary.json, rlhf_log.csv, config.json (the settings, which --config reads back) and (with "
        "matplotlib) rlhf.png to --out. Every DemoConfig field is an option, the pretraining and RL ones "
        "prefixed (--pretrain-steps, --rlhf-batch-size).",
    )
    parser.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    options.add_config_option(parser)
    options.add_setting_options(parser, DemoConfig(), skip=SKIPPED, aliases={"rlhf_kl_target": ["--kl-target"]})
    add_tokenizer_option(parser)
    add_tensorboard_option(parser)
    parser.set_defaults(func=run)


def run(args):
    config = options.apply_settings(DemoConfig(), options.chosen_settings(args), skip=SKIPPED)
    settings = options.setting_values(config, skip=SKIPPED)
    options.write_config(os.path.join(args.out, options.CONFIG_NAME), settings)
    run_log = RunLog(args.tensorboard, settings)
    run_demo(config, out_dir=args.out, tokenizer=load_tokenizer(args.tokenizer), run_log=run_log)
    run_log.close()

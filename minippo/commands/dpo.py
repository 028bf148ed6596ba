"""``minippo dpo``: direct preference optimisation of a policy checkpoint on preference pairs."""
import os
from dataclasses import asdict

from minippo import runs
from minippo.commands import integer_option, preference_split
from minippo.commands.models import add_template_option, command_template, load_policy_and_tokenizer, policy_template
from minippo.nn.checkpoint import save_checkpoint
from minippo.rlhf.diagnostics import write_csv
from minippo.rlhf.dpo import DPO_LOSS_TYPES, DPOConfig, DPOTrainer
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_pair_tokens, pair_memory
from minippo.text.gpt2 import tokenizer_record


def register(subparsers):
    defaults = DPOConfig()
    parser = subparsers.add_parser(
        "dpo",
        help="fine-tune a policy checkpoint on preference pairs with DPO (no reward model, no sampling)",
        description="Direct preference optimisation: minimise -log σ(β[(log π(chosen) - log π_ref(chosen)) - "
        "(log π(rejected) - log π_ref(rejected))]) (or its robust, ipo or hinge variant) over pairs, "
        "with the starting policy as the frozen reference. Pairs are JSONL lines {\"prompt\": ..., "
        "\"chosen\": ..., \"rejected\": ...}; a random --test-fraction of the prompts is held out. Writes policy.npz "
        "(loadable by `minippo rlhf` and `minippo generate`) and dpo_log.csv to --out.",
    )
    parser.add_argument("--policy", required=True,
                        help="policy checkpoint (.npz) or Hugging Face GPT-2 directory: the start and the reference")
    parser.add_argument("--data", help="preference pairs, JSONL (default: the shipped pairs, with their test split)")
    parser.add_argument("--test-fraction", type=float, default=0.15,
                        help="fraction of the prompts of --data held out, with all their pairs (default: 0.15)")
    add_template_option(parser)
    parser.add_argument("--beta", type=float, default=defaults.beta, help=f"β (default: {defaults.beta})")
    parser.add_argument("--loss-type", choices=DPO_LOSS_TYPES, default=defaults.loss_type,
                        help=f"loss of the log-ratio margin (default: {defaults.loss_type})")
    parser.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing,
                        help="ε, the assumed share of flipped labels, for sigmoid (cDPO) and robust (default: 0)")
    parser.add_argument("--steps", type=integer_option(1), default=defaults.steps,
                        help=f"optimizer steps (default: {defaults.steps})")
    parser.add_argument("--batch-size", type=integer_option(1), default=defaults.batch_size,
                        help=f"pairs per step (default: {defaults.batch_size})")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate,
                        help=f"peak learning rate (default: {defaults.learning_rate})")
    parser.add_argument("--log-every", type=integer_option(1), default=defaults.log_every,
                        help=f"steps per log row and held-out evaluation (default: {defaults.log_every})")
    parser.add_argument("--seed", type=integer_option(0), default=0, help="seed (default: 0)")
    parser.add_argument("--out", default="runs/dpo", help="output directory (default: runs/dpo)")
    runs.add_run_options(parser, resume=False, periodic=False)
    parser.set_defaults(func=run)


def run(args):
    split_seed, order_seed = spawn_seeds(args.seed, 2)  # the held-out split, the batch order
    config = DPOConfig(beta=args.beta, loss_type=args.loss_type, label_smoothing=args.label_smoothing,
                       steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       min_learning_rate=min(DPOConfig.min_learning_rate, args.learning_rate),
                       log_every=args.log_every, seed=order_seed)
    train, test = preference_split(args.data, args.test_fraction, split_seed)
    policy, tokenizer = load_policy_and_tokenizer(args.policy)
    template = command_template(args.template, [(policy_template(args.policy), args.policy)])
    runs.check_outputs(args, directories=[(args.out, "--out")],
                       run_files=[(os.path.join(args.out, name), "--out") for name in ("policy.npz", "dpo_log.csv")])
    check_memory(pair_memory, {"--batch-size": args.batch_size},
                 {"model": gpt_sizes(policy.config), "tokens": longest_pair_tokens(tokenizer, train), "reference": 1})
    trainer = DPOTrainer(policy, tokenizer, train, config, test_pairs=test, template=template)
    rows = trainer.train()
    write_csv(rows, os.path.join(args.out, "dpo_log.csv"))
    path = os.path.join(args.out, "policy.npz")
    save_checkpoint(path, policy.params, policy.config.to_dict(),
                    extra={"tokenizer": tokenizer_record(tokenizer), "template": template.text, "dpo": asdict(config)},
                    kind="gpt")
    print(f"held-out preference accuracy (implicit reward): {rows[-1]['test_accuracy']:.3f} on {len(test)} pairs")
    print(f"wrote {path} and {os.path.join(args.out, 'dpo_log.csv')}")

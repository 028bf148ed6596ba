"""``minippo pretrain``: train a small GPT on a text file (default: the shipped dialogue corpus)."""
import os

import numpy as np

from minippo import runs
from minippo.commands import integer_option
from minippo.commands.models import load_policy_and_tokenizer
from minippo.commands.tokenizer import add_tokenizer_option, load_tokenizer
from minippo.distributed import world
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import PretrainConfig, encode_documents, pretrain
from minippo.rlhf.rollout import generate_rollout
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_in_tokens, pretrain_memory
from minippo.text.corpus import format_prompt, load_corpus, load_prompts
from minippo.text.files import read_text

DEFAULT_MODEL = dict(block_size=96, n_layer=2, n_head=4, n_embd=96)


def register(subparsers):
    defaults = PretrainConfig()
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a small GPT on a text file (default: the shipped corpus)",
        description="Pretrain a GPT with next-token cross-entropy. Each line of the text is one document. "
        "Prints step, loss, tokens/s and ETA, then samples; writes a checkpoint that --resume continues.",
    )
    parser.add_argument("--data", help="UTF-8 text file, one document per line (default: the shipped dialogues)")
    parser.add_argument("--init", metavar="CKPT_OR_DIR",
                        help="start from this policy checkpoint or Hugging Face GPT-2 directory, with its sizes and "
                        "tokenizer (the size options and --dtype are then not used; default: random weights)")
    parser.add_argument("--out", default="runs/pretrain", help="output directory (default: runs/pretrain)")
    parser.add_argument("--steps", type=integer_option(1), default=defaults.steps,
                        help=f"optimizer steps (default: {defaults.steps})")
    parser.add_argument("--batch-size", type=integer_option(1), default=defaults.batch_size,
                        help=f"documents per batch (default: {defaults.batch_size})")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate,
                        help=f"peak learning rate (default: {defaults.learning_rate})")
    parser.add_argument("--seed", type=integer_option(0), default=defaults.seed,
                        help="seed of the initial weights, the batches and the samples (default: 0)")
    parser.add_argument("--n-layer", type=integer_option(1), default=DEFAULT_MODEL["n_layer"],
                        help="transformer blocks")
    parser.add_argument("--n-head", type=integer_option(1), default=DEFAULT_MODEL["n_head"], help="attention heads")
    parser.add_argument("--n-embd", type=integer_option(1), default=DEFAULT_MODEL["n_embd"], help="embedding width")
    parser.add_argument("--block-size", type=integer_option(1), default=DEFAULT_MODEL["block_size"],
                        help="context length")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="array dtype")
    add_tokenizer_option(parser)
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the run in OUT/model.npz, written every {defaults.checkpoint_every} steps "
                        "and on Ctrl-C (same settings; --steps may grow)")
    parser.add_argument("--samples", type=integer_option(0), default=4,
                        help="samples to print after training (default: 4)")
    runs.add_run_options(parser, resume=False, periodic=False)  # --resume above; OUT/model.npz is written
    parser.set_defaults(func=run)                                  # every checkpoint_every steps


def print_samples(model, tokenizer, prompts, seed, log=print):
    """Sample one continuation per prompt (temperature 1) and print prompt + continuation."""
    log("samples:")
    room = model.config.block_size - max(len(tokenizer.encode(p)) for p in prompts)
    if room < 1:
        log(f"no samples: the longest prompt fills the {model.config.block_size}-token context")
        return
    rollout = generate_rollout(model, tokenizer, prompts, room, 1.0, np.random.default_rng(seed))
    for prompt, response in zip(prompts, rollout.responses):
        log(f"  {prompt}{response}")


def require_memory_for(args, model_config, longest_line):
    """Refuse now, naming the option, if the model in training and a batch of documents as long as the
    longest line (``longest_line`` tokens) cannot fit."""
    options = {"--batch-size": args.batch_size}
    if args.init is None:
        options.update({"--n-layer": args.n_layer, "--n-head": args.n_head, "--n-embd": args.n_embd,
                        "--block-size": args.block_size})
    check_memory(pretrain_memory, options, {**gpt_sizes(model_config), "tokens": longest_line})


def run(args):
    if args.init is None:
        model, tokenizer = None, load_tokenizer(args.tokenizer)
        model_config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                                 n_head=args.n_head, n_embd=args.n_embd, dtype=args.dtype)
    elif args.tokenizer is not None:
        raise ValueError(f"--tokenizer cannot be used with --init: {args.init} brings its own tokenizer")
    else:
        model, tokenizer = load_policy_and_tokenizer(args.init)
        model_config = model.config
    require_memory_for(args, model_config, 1)  # documents of one token at least: before reading them
    lines = load_corpus() if args.data is None else read_text(args.data).splitlines()
    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            min_learning_rate=min(args.learning_rate, PretrainConfig.min_learning_rate),
                            seed=args.seed)
    require_memory_for(args, model_config, longest_in_tokens(tokenizer, lines))
    try:
        documents = encode_documents(lines, tokenizer, model_config.block_size)
    except ValueError as error:
        raise ValueError(f"{args.data or 'the shipped corpus'}: {error}") from None
    checkpoint = os.path.join(args.out, "model.npz")
    runs.check_outputs(args, directories=[(args.out, "--out")], run_files=[(checkpoint, "--out")],
                       flag_checkpoint=checkpoint)
    init_seed, sample_seed = spawn_seeds(args.seed, 2)  # independent of the batches' stream (config.seed)
    if model is None:
        model = GPT(model_config, seed=init_seed)
    start = "" if args.init is None else f" from {args.init}"
    print(f"pretraining a {model.num_parameters():,}-parameter GPT{start} on {len(documents):,} documents "
          f"for {config.steps} steps, {world().describe()}")
    with runs.Interrupt() as interrupt:
        losses = pretrain(model, documents, config, tokenizer, checkpoint_path=checkpoint, resume=args.resume,
                          stop=interrupt.stop_after(world()))
    if interrupt.stopped_at is not None:
        return runs.interrupted(args, f"step {interrupt.stopped_at}", checkpoint, flag=True)
    if losses:
        print(f"wrote {checkpoint}")
    if args.samples > 0 and world().is_root:
        prompts = [format_prompt(p) for p in load_prompts("test")[:args.samples]] if args.data is None \
            else [line[:8] for line in lines if line.strip()][:args.samples]
        print_samples(model, tokenizer, prompts, sample_seed)

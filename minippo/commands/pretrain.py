"""``minippo pretrain``: train a small GPT on a text file (default: the shipped dialogue corpus)."""
import os
from dataclasses import dataclass

import numpy as np

from minippo import runs
from minippo.checks import integer, one_of, setting
from minippo.commands import options
from minippo.commands.models import load_policy_and_tokenizer
from minippo.commands.tokenizer import add_tokenizer_option, load_tokenizer
from minippo.distributed import world
from minippo.nn.gpt import GPT, GPTConfig
from minippo.pretrain import PretrainConfig, encode_documents, pretrain
from minippo.rlhf.rollout import generate_rollout
from minippo.run_log import RunLog, add_tensorboard_option
from minippo.seeding import spawn_seeds
from minippo.sizes import check_memory, gpt_sizes, longest_in_tokens, pretrain_memory
from minippo.text.corpus import format_prompt, load_corpus, load_prompts
from minippo.text.files import read_text


@dataclass
class PretrainRun:
    """The settings of ``minippo pretrain`` besides the optimisation's (:class:`PretrainConfig`): the sizes
    of a new model (``GPTConfig``'s) and the samples printed at the end."""

    n_layer: int = setting(2, "transformer blocks", integer(1))
    n_head: int = setting(4, "attention heads", integer(1))
    n_embd: int = setting(96, "embedding width (a multiple of n_head)", integer(1))
    block_size: int = setting(96, "context length", integer(1))
    dtype: str = setting("float32", "array dtype", one_of("float32", "float64"))
    samples: int = setting(4, "samples to print after training", integer(0))


def register(subparsers):
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a small GPT on a text file (default: the shipped corpus)",
        description="Pretrain a GPT with next-token cross-entropy. Each line of the text is one document. "
        "Prints step, loss, tokens/s and ETA, then samples; writes a checkpoint that --resume continues, and "
        "the settings run with as config.json, which --config reads back.",
    )
    parser.add_argument("--data", help="UTF-8 text file, one document per line (default: the shipped dialogues)")
    parser.add_argument("--init", metavar="CKPT_OR_DIR",
                        help="start from this policy checkpoint or Hugging Face GPT-2 directory, with its sizes and "
                        "tokenizer (the size options and --dtype are then not used; default: random weights)")
    parser.add_argument("--out", default="runs/pretrain", help="output directory (default: runs/pretrain)")
    options.add_config_option(parser)
    options.add_setting_options(parser, PretrainConfig(), aliases={"learning_rate": ["--lr"]})
    options.add_setting_options(parser, PretrainRun())
    add_tokenizer_option(parser)
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the run in OUT/model.npz, written every {PretrainConfig.checkpoint_every} "
                        "steps and on Ctrl-C (same settings; --steps may grow)")
    add_tensorboard_option(parser)
    runs.add_run_options(parser, resume=False, periodic=False)  # --resume above; OUT/model.npz is written
    parser.set_defaults(func=run)                                  # every checkpoint_every steps


def settings_from_args(args):
    """``(run, config)``: the defaults, then the ``--config`` file, then the options given; without a
    minimum learning rate of its own, a learning rate below the default minimum is also the minimum."""
    chosen = options.follow_learning_rate(options.chosen_settings(args), PretrainConfig)
    return options.apply_settings(PretrainRun(), chosen), options.apply_settings(PretrainConfig(), chosen)


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


def require_memory_for(init, sizes, config, model_config, longest_line):
    """Refuse now, naming the option, if the model in training and a batch of documents as long as the
    longest line (``longest_line`` tokens) cannot fit (a model from ``init`` brings its own sizes)."""
    blamed = {"--batch-size": config.batch_size}
    if init is None:
        blamed.update({"--n-layer": sizes.n_layer, "--n-head": sizes.n_head, "--n-embd": sizes.n_embd,
                       "--block-size": sizes.block_size})
    check_memory(pretrain_memory, blamed, {**gpt_sizes(model_config), "tokens": longest_line})


def run(args):
    sizes, config = settings_from_args(args)
    if args.init is None:
        model, tokenizer = None, load_tokenizer(args.tokenizer)
        model_config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=sizes.block_size, n_layer=sizes.n_layer,
                                 n_head=sizes.n_head, n_embd=sizes.n_embd, dtype=sizes.dtype)
    elif args.tokenizer is not None:
        raise ValueError(f"--tokenizer cannot be used with --init: {args.init} brings its own tokenizer")
    else:
        model, tokenizer = load_policy_and_tokenizer(args.init)
        model_config = model.config
    require_memory_for(args.init, sizes, config, model_config, 1)  # one-token documents: before reading them
    lines = load_corpus() if args.data is None else read_text(args.data).splitlines()
    require_memory_for(args.init, sizes, config, model_config, longest_in_tokens(tokenizer, lines))
    try:
        documents = encode_documents(lines, tokenizer, model_config.block_size)
    except ValueError as error:
        raise ValueError(f"{args.data or 'the shipped corpus'}: {error}") from None
    checkpoint = os.path.join(args.out, "model.npz")
    config_path = os.path.join(args.out, options.CONFIG_NAME)
    runs.check_outputs(args, directories=[(args.out, "--out")],
                       run_files=[(checkpoint, "--out"), (config_path, "--out")], flag_checkpoint=checkpoint)
    init_seed, sample_seed = spawn_seeds(config.seed, 2)  # independent of the batches' stream (config.seed)
    if model is None:
        model = GPT(model_config, seed=init_seed)
    start = "" if args.init is None else f" from {args.init}"
    print(f"pretraining a {model.num_parameters():,}-parameter GPT{start} on {len(documents):,} documents "
          f"for {config.steps} steps, {world().describe()}")
    settings = {**options.setting_values(config), **options.setting_values(sizes)}
    if world().is_root:
        options.write_config(config_path, settings)
    run_log = RunLog(args.tensorboard if world().is_root else None, settings)
    with runs.Interrupt() as interrupt:
        losses = pretrain(model, documents, config, tokenizer, checkpoint_path=checkpoint, resume=args.resume,
                          stop=interrupt.stop_after(world()))
    last_step = interrupt.stopped_at or config.steps  # the last step trained here
    for step, loss in enumerate(losses, start=last_step - len(losses) + 1):
        run_log.scalars(step, {"loss": loss})
    run_log.close()
    if interrupt.stopped_at is not None:
        return runs.interrupted(args, f"step {interrupt.stopped_at}", checkpoint, flag=True)
    if losses:
        print(f"wrote {checkpoint}")
    if sizes.samples > 0 and world().is_root:
        prompts = [format_prompt(p) for p in load_prompts("test")[:sizes.samples]] if args.data is None \
            else [line[:8] for line in lines if line.strip()][:sizes.samples]
        print_samples(model, tokenizer, prompts, sample_seed)

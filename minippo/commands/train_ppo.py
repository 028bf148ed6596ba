"""``minippo train-ppo``: train PPO (or REINFORCE) on a control task and log its learning curve.

    minippo train-ppo --env CartPole-v1 --log-csv runs/cartpole.csv --save runs/cartpole.npz

Every ``PPOConfig`` field is an option (``minippo.commands.options``); the settings come from the preset
(or the recipe of the action space), then ``--config FILE``, then the options given, and are written as
``<name>.config.json`` beside ``--save`` (else ``--log-csv``).  One progress line per update (steps,
steps/s, mean return of the last 20 episodes -- a dash until one has ended --, ETA); ``--tensorboard DIR``
also logs every figure under CleanRL's names (``minippo.run_log``).
``--log-csv`` writes one row per finished episode, ``global_step,episode_return,episode_length``,
and, when matplotlib is installed, the learning curve as a PNG next to it (or at ``--plot``).
``--save`` writes a checkpoint that ``minippo evaluate --load`` reads and ``--resume`` continues
(bit-identically); Ctrl-C or SIGTERM saves it and prints the command that resumes (``minippo.runs``);
``--eval-every K`` evaluates on separate environments and keeps ``best.npz``.  After training the
checkpoint is written first, then the CSV, then the plot, so that a failing plot never loses the
trained policy; every output path is checked before training starts.

Training runs with one BLAS thread (``PPOConfig.blas_threads``): tiny networks only lose time to
thread synchronisation, several times over on a busy machine.
"""
import csv
import math
import os

from minippo import envs, runs
from minippo.atomic import atomic_write
from minippo.commands import options
from minippo.commands.evaluate import add_control_evaluation_options, periodic_evaluation
from minippo.progress import format_duration
from minippo.rl.ppo import RECENT_EPISODES, Trainer
from minippo.rl.ppo_config import PRESETS, PPOConfig, choose_preset
from minippo.run_log import RunLog, add_tensorboard_option
from minippo.sizes import check_memory, rollout_memory

EPISODE_COLUMNS = ("global_step", "episode_return", "episode_length")


def register(subparsers):
    parser = subparsers.add_parser(
        "train-ppo",
        help="train PPO or REINFORCE on CartPole-v1, Pendulum-v1 or a gymnasium environment",
        description="Train an MLP actor-critic with PPO (CleanRL's algorithm) or REINFORCE. Settings come "
        "from a preset (default: the environment's own, e.g. cartpole-fast; without one, the discrete or "
        "continuous recipe by the action space), then from --config, then from the options given. The "
        "defaults shown are the discrete recipe's (CleanRL's ppo.py). The settings run with are written as "
        "<name>.config.json beside --save (else --log-csv).",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), metavar="NAME",
                        help=f"hyper-parameter preset, one of {', '.join(sorted(PRESETS))} (default: the "
                        "environment's, e.g. cartpole-fast for CartPole-v1; see docs/ppo.md); with no --env, the "
                        "preset's environment")
    options.add_config_option(parser)
    options.add_setting_options(parser, PPOConfig(), aliases={"env_id": ["--env"], "learning_rate": ["--lr"]})
    parser.add_argument("--log-csv", metavar="PATH", help="write one row per episode to this CSV file")
    parser.add_argument("--plot", metavar="PATH",
                        help="learning-curve PNG (default: next to --log-csv; needs matplotlib)")
    parser.add_argument("--save", metavar="PATH",
                        help="write a checkpoint (.npz) at the end and on Ctrl-C, which --resume continues")
    add_tensorboard_option(parser)
    runs.add_run_options(parser)
    add_control_evaluation_options(parser)
    parser.set_defaults(func=run)


def config_from_args(args):
    """``(chosen, config)``: the preset (or recipe) chosen by ``--env``/``--preset``, then the ``--config``
    file, then the options given; ``chosen`` names the preset or recipe."""
    settings = options.chosen_settings(args)
    chosen, preset = choose_preset(settings.get("env_id"), args.preset)
    return chosen, options.apply_settings(preset, settings)


def steps_line(config):
    """What the run trains, and how --total-steps was rounded down to whole rollouts."""
    steps = config.num_updates * config.batch_size
    rounded = "" if steps == config.total_steps else \
        f" (--total-steps {config.total_steps:,} is {config.num_updates} updates of {config.batch_size} = " \
        f"{steps:,} steps)"
    return f"{config.num_updates} updates of {config.num_envs} envs x {config.num_steps} steps{rounded}"


def shown_return(value):
    """A mean return for the progress line: a dash until an episode has ended."""
    return f"{value:8.1f}" if math.isfinite(value) else f"{'–':>8s}"


def write_episodes_csv(path, episodes):
    """One row ``global_step,episode_return,episode_length`` per episode, after a header."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as file:  # creates the directory too
        writer = csv.writer(file)
        writer.writerow(EPISODE_COLUMNS)
        writer.writerows(episodes)


def plot_learning_curve(path, episodes, title):
    """Episode returns against environment steps, with their running mean, as a PNG.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([step for step, _, _ in episodes])
    returns = np.array([episode_return for _, episode_return, _ in episodes])
    window = np.ones(min(RECENT_EPISODES, max(len(returns), 1)))
    running_mean = np.convolve(returns, window, mode="valid") / len(window) if len(returns) else returns
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(steps, returns, ".", alpha=0.3, label="episode return")
    axes.plot(steps[len(window) - 1:], running_mean, label=f"mean of last {len(window)}")
    axes.set(xlabel="environment steps", ylabel="episode return", title=title)
    axes.legend()
    figure.tight_layout()
    image_format = os.path.splitext(path)[1].lstrip(".") or "png"  # the extension says the format
    with atomic_write(path) as file:  # creates the directory too
        figure.savefig(file, format=image_format, dpi=100)
    plt.close(figure)
    return True


def run(args):
    chosen, config = config_from_args(args)
    plot_path = args.plot or (os.path.splitext(args.log_csv)[0] + ".png" if args.log_csv else None)
    output = args.save or args.log_csv
    config_path = options.config_beside(output) if output else None
    if args.save_every and not args.save:
        raise ValueError("--save-every needs --save PATH (the periodic checkpoints are written beside it)")
    runs.check_outputs(args, files=[(args.save, "--save"), (args.log_csv, "--log-csv"), (plot_path, "--plot")])
    with envs.make(config.env_id, num_envs=1, seed=0) as probe:  # its spaces size the rollout buffers
        check_memory(rollout_memory, {"--num-envs": config.num_envs}, {"num_steps": config.num_steps, "env": probe})
    trainer = Trainer(config)
    if args.resume:
        trainer.load_state(args.resume)
        print(f"resumed from {args.resume} at update {len(trainer.history.updates)}")
    start_update = len(trainer.history.updates)
    evaluation = periodic_evaluation(args, trainer)  # None without --eval-every
    print(f"{config.algo} on {config.env_id} ({chosen}): {steps_line(config)}, seed {config.seed}, "
          f"{trainer.world.describe()}")
    settings = options.setting_values(config)
    if config_path and trainer.world.is_root:
        print(f"settings: {options.write_config(config_path, settings)}")
    run_log = RunLog(args.tensorboard if trainer.world.is_root else None, settings)

    def progress(trainer, stats):
        eta = stats["time"] / (stats["update"] - start_update) * (config.num_updates - stats["update"])
        print(f"update {stats['update']:4d}/{config.num_updates}  step {stats['global_step']:9,}  "
              f"SPS {stats['sps']:7,.0f}  return {shown_return(stats['recent_return'])}  "
              f"ETA {format_duration(eta)}", flush=True)
        reached_target = evaluation is not None and evaluation(trainer, stats)  # adds eval/* to the stats
        run_log.scalars(stats["global_step"], stats)
        runs.save_periodic(trainer.save, args.save, stats["update"], args.save_every, args.keep)
        return stop(stats["update"]) or reached_target

    with runs.Interrupt() as interrupt:  # (a Ctrl-C while saving waits for the checkpoint)
        stop = interrupt.stop_after(trainer.world)
        history = trainer.train(progress)
        if args.save:
            trainer.save(args.save)
    for step, episode_return, length in history.episodes:
        run_log.scalars(step, {"episode_return": episode_return, "episode_length": length})
    run_log.close()
    if interrupt.stopped_at is not None:  # some rank was interrupted
        return runs.interrupted(args, f"update {len(history.updates)}", args.save)
    print(f"done: {trainer.global_step:,} steps in {format_duration(history.updates[-1]['time'])}, "
          f"mean return of the last {RECENT_EPISODES} episodes {shown_return(history.recent_return()).strip()}")
    if evaluation is not None:
        print(evaluation.tracker.summary())
    if args.save:
        print(f"wrote {args.save}")
    if not trainer.world.is_root:  # the other ranks hold the same history
        return
    if args.log_csv:
        write_episodes_csv(args.log_csv, history.episodes)
        print(f"wrote {args.log_csv}")
    if plot_path:
        if plot_learning_curve(plot_path, history.episodes, f"{config.algo} on {config.env_id}"):
            print(f"wrote {plot_path}")
        else:
            print("matplotlib is not installed: no plot (pip install matplotlib)")

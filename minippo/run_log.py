"""What a run logs, under the names CleanRL and TRL users already read, to TensorBoard.

The CSV files stay the default record of a run (each command writes its own: ``train-ppo --log-csv``
one row per episode, ``rlhf_log.csv`` one row per iteration); ``--tensorboard DIR`` also writes
TensorBoard event files through tensorboardX (``pip install "minippo[tensorboard]"``; imported only
when asked for): every logged figure as a scalar, the run's settings as text, and RLHF sample
completions as text.  ``tensorboard --logdir DIR`` shows them.

The trainers' statistics keep their own keys; :data:`METRIC_NAMES` is the one table that maps them to
the shared names (a key not in it -- TRL-style ``policy/entropy``, ``completions/mean_length``, ... --
is already a shared name and is logged as it is):

    train-ppo (per update, and per episode)   rlhf, grpo, demo (per iteration)   pretrain (per step)
    charts/episodic_return, episodic_length   objective/scores (reward/mean)     losses/loss
    charts/SPS, charts/learning_rate          objective/kl (kl_k1), objective/beta
    losses/policy_loss, value_loss, entropy,  policy/*, value/*, completions/*
      approx_kl, clipfrac, explained_variance
"""
import json

from minippo.checks import is_real

METRIC_NAMES = {
    # minippo.rl.ppo.Trainer, one dict per update (CleanRL's ppo.py names)
    "sps": "charts/SPS",
    "learning_rate": "charts/learning_rate",
    "recent_return": "charts/mean_recent_return",
    "loss": "losses/loss",
    "policy_loss": "losses/policy_loss",
    "value_loss": "losses/value_loss",
    "entropy": "losses/entropy",
    "approx_kl": "losses/approx_kl",
    "clipfrac": "losses/clipfrac",
    "explained_variance": "losses/explained_variance",
    "grad_norm": "losses/grad_norm",
    # one finished episode (train-ppo's CSV columns)
    "episode_return": "charts/episodic_return",
    "episode_length": "charts/episodic_length",
    # minippo.rlhf.trainer.RLHFTrainer, one dict per iteration (TRL's names)
    "reward/mean": "objective/scores",
    "reward/std": "objective/scores_std",
    "objective/kl_k1": "objective/kl",
}
NOT_FIGURES = ("update", "global_step", "iteration", "time")  # the step itself, or the clock


def shared_name(key):
    """The name a trainer's statistic ``key`` is logged under (:data:`METRIC_NAMES`, else ``key``)."""
    return METRIC_NAMES.get(key, key)


def tensorboard_writer(directory):
    """A ``tensorboardX.SummaryWriter`` writing to ``directory``, or an ImportError saying what to install."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError('--tensorboard needs tensorboardX: pip install "minippo[tensorboard]" '
                          "(or pip install tensorboardX)") from None
    return SummaryWriter(logdir=directory)


def samples_markdown(samples, shown=8):
    """The first ``shown`` of an RLHF iteration's samples (the trainer's ``last_samples``) as a markdown
    table of prompt, response and reward, for TensorBoard's text tab."""
    def cell(text):
        return text.replace("|", "\\|").replace("\n", " ")
    rows = [f"| {cell(sample['prompt'])} | {cell(sample['response'])} | {sample['reward']:+.3f} |"
            for sample in samples[:shown]]
    return "\n".join(["| prompt | response | reward |", "|---|---|---|", *rows])


def add_tensorboard_option(parser):
    """``--tensorboard DIR``."""
    parser.add_argument("--tensorboard", metavar="DIR",
                        help="also write TensorBoard event files to DIR: every logged figure, the settings and "
                        "(rlhf) sample completions (needs tensorboardX; view with tensorboard --logdir DIR)")


class RunLog:
    """A run's figures to TensorBoard when ``tensorboard_dir`` is given (otherwise every call does
    nothing), with ``settings`` (a dict) written once as text under ``config``."""

    def __init__(self, tensorboard_dir=None, settings=None):
        self.writer = None if tensorboard_dir is None else tensorboard_writer(tensorboard_dir)
        if self.writer is not None and settings is not None:
            self.writer.add_text("config", "```\n" + json.dumps(settings, indent=2) + "\n```", 0)

    def scalars(self, step, stats):
        """Every number in ``stats`` (a trainer's dict) at ``step``, under its shared name."""
        if self.writer is None:
            return
        for key, value in stats.items():
            if key not in NOT_FIGURES and is_real(value):
                self.writer.add_scalar(shared_name(key), float(value), step)

    def text(self, tag, step, text):
        """``text`` (markdown) under ``tag`` at ``step``."""
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def close(self):
        """Flush and close the event file."""
        if self.writer is not None:
            self.writer.close()

"""What an online RLHF run logs, so a user can tell a healthy run from a broken one.

Names are grouped by prefix, as TRL and CleanRL group them; every trainer iteration returns them (and
the command line writes them as CSV columns):

    reward/mean, reward/std                 the judge's score of the responses (after missing_eos_penalty)
    reward/<name>/mean, reward/<name>/std   each judge's, when the reward is a dict of judges summed with weights
    completions/mean_length, min_length,    response length in tokens (EOS included), and the share of
      max_length, clipped_ratio             responses cut at max_new_tokens (they never emitted EOS)
    objective/kl_k1, kl_k2, kl_k3, beta     KL(π ‖ π_ref) per response by each estimator (minippo.rl.kl; k1 can
                                            go negative, k2 and k3 cannot), and the KL coefficient β
    policy/loss, entropy, approx_kl,        the update: the policy loss, the entropy of π on response tokens,
      clipfrac_low, clipfrac_high,          mean((ρ − 1) − log ρ) ≈ KL(π_old ‖ π), the shares of ratios ρ below
      first_ratio_max_error                 1 − ε and above 1 + ε_high, and max |ρ − 1| before the first step (0)
    value/loss, value/explained_variance    PPO's critic
    frac_reward_zero_std                    RLOO, GRPO: share of groups whose rewards are all equal (no signal)
    grad_norm                               global gradient norm before clipping
    time/generate, score, forward, train    seconds spent in each stage

An entropy collapsing toward 0, a clip fraction or approx_kl that keeps growing, frac_reward_zero_std
near 1 (the task is too easy or too hard), clipped_ratio near 1 (responses that never end) or a k1
estimate far below k3 (too few samples for the KL) each say that something is off.
"""
import csv
import json

import numpy as np

from minippo.atomic import atomic_write
from minippo.distributed import LOCAL
from minippo.rl.kl import KL_ESTIMATORS, kl_estimate


def reward_stats(scores, parts=None, names=()):
    """reward/mean and reward/std of the scores (B,), and reward/<name>/mean and /std of each column of
    ``parts`` (B, K), the scores of K judges that were summed with weights."""
    stats = {"reward/mean": float(np.mean(scores)), "reward/std": float(np.std(scores))}
    for name, column in zip(names, np.asarray(parts).T if len(names) else ()):
        stats.update({f"reward/{name}/mean": float(column.mean()), f"reward/{name}/std": float(column.std())})
    return stats


def completion_stats(lengths, truncated):
    """Length mean/min/max in tokens of the responses (``lengths`` (B,)) and the share of them cut at the
    limit (``truncated`` (B,))."""
    return {"completions/mean_length": float(lengths.mean()), "completions/min_length": int(lengths.min()),
            "completions/max_length": int(lengths.max()), "completions/clipped_ratio": float(truncated.mean())}


def kl_stats(logprobs, ref_logprobs, mask, world=LOCAL):
    """objective/kl_k1, kl_k2, kl_k3: the mean over responses (of every rank, ``world``) of Σ_t KL_t by each
    estimator; none at β = 0, where no reference runs (the progress line shows "kl –")."""
    if ref_logprobs is None:
        return {}
    return {f"objective/kl_{name}": float(world.mean(kl_estimate(logprobs, ref_logprobs, mask, name).sum(axis=1)))
            for name in KL_ESTIMATORS}


def mean_stats(history):
    """The mean of each key over a list of per-minibatch dicts (an empty list gives an empty dict)."""
    return {key: float(np.mean([h[key] for h in history])) for key in (history[0] if history else ())}


def progress_line(iteration, total, stats):
    """One line per RL iteration: reward, KL, β, lengths, the update's diagnostics, and where the time went."""
    kl = (f"kl {stats['objective/kl_k1']:.2f} (k3 {stats['objective/kl_k3']:.2f})" if "objective/kl_k1" in stats
          else "kl –")  # (β = 0: no reference, no KL)
    line = (f"iter {iteration:3d}/{total}  reward {stats['reward/mean']:+.3f}±{stats['reward/std']:.2f}  {kl}  "
            f"beta {stats['objective/beta']:.3f}  len {stats['completions/mean_length']:.1f} "
            f"[{stats['completions/min_length']}-{stats['completions/max_length']}] "
            f"cut {stats['completions/clipped_ratio']:.0%}  ")
    if "policy/entropy" in stats:
        line += (f"entropy {stats['policy/entropy']:.2f}  clip {stats['policy/clipfrac_low']:.3f}/"
                 f"{stats['policy/clipfrac_high']:.3f}  approx_kl {stats['policy/approx_kl']:.4f}  "
                 f"grad {stats['grad_norm']:.2f}  ")
    if "frac_reward_zero_std" in stats:
        line += f"zero-std {stats['frac_reward_zero_std']:.0%}  "
    return line + (f"gen/score/forward/train {stats['time/generate']:.1f}/{stats['time/score']:.1f}/"
                   f"{stats['time/forward']:.1f}/{stats['time/train']:.1f}s")


def write_csv(rows, path):
    """The per-iteration statistics, one row per iteration; the columns are every key seen, in order."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_write(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(rows, path, reward_label, x_label, kl_target=None):
    """Mean reward and KL (k1) per iteration to a PNG, with a dashed line at ``kl_target`` if given, when
    matplotlib is installed; returns whether it wrote."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    iterations = [row["iteration"] for row in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(iterations, [row["reward/mean"] for row in rows])
    top.set_ylabel(reward_label)
    bottom.plot(iterations, [row.get("objective/kl_k1", np.nan) for row in rows], label="KL")  # (none at β = 0)
    if kl_target is not None:
        bottom.axhline(kl_target, color="gray", linestyle="--", label="target")
        bottom.legend()
    bottom.set_ylabel("KL to reference (nats)")
    bottom.set_xlabel(x_label)
    figure.tight_layout()
    with atomic_write(path) as file:
        figure.savefig(file, format="png")
    plt.close(figure)
    return True


class SampleLog:
    """Sample completions with their rewards, one JSON object per line: iteration, prompt, response,
    reward, length (tokens) and truncated.  :meth:`add` rewrites the whole file atomically, so a crash
    never leaves half a line."""

    def __init__(self, path):
        self.path, self.lines = path, []

    def add(self, iteration, samples):
        """Append ``samples`` (the trainer's ``last_samples``) of ``iteration`` and rewrite the file."""
        self.lines += [json.dumps({"iteration": iteration, **sample}, ensure_ascii=False) for sample in samples]
        with atomic_write(self.path, "w", encoding="utf-8") as file:
            file.write("\n".join(self.lines) + "\n")

"""Paired timing for the benchmarks that race minippo against a peer library in one process.

Each repeat visits every implementation in turn, interleaved.  On switching it pauses (so that spinning
BLAS/OpenMP worker threads of the other library go to sleep), runs one untimed call (the first call
after an idle pause is 5-15% slower for every implementation: cold caches, sleeping threads), then
times ``calls`` calls back to back and records their mean.  On a shared machine whole repeats run
10-15% faster or slower, so the verdict pairs the implementations within each repeat (one ratio per
repeat) and reads the median and quartiles of those ratios; a target counts as met only when the
lower quartile meets it.
"""
import statistics
import time

SWITCH_PAUSE = 0.15  # s: OpenBLAS workers spin ~2^28 cycles before sleeping; let them park


def measure(runners, method, args, repeats, warmup, calls):
    """Interleaved timing: {runner name: [seconds per call]}."""
    times = {runner.name: [] for runner in runners}
    for _ in range(warmup):
        for runner in runners:
            getattr(runner, method)(*args)
    for _ in range(repeats):
        for runner in runners:
            time.sleep(SWITCH_PAUSE)
            fn = getattr(runner, method)
            fn(*args)  # back from the pause: not timed
            start = time.perf_counter()
            for _ in range(calls):
                fn(*args)
            times[runner.name].append((time.perf_counter() - start) / calls)
    return times


def report(title, times, tokens, flops):
    print(title)
    print(f"  {'implementation':<14} {'ms/call':>10} {'(min)':>9} {'tokens/s':>11} {'GFLOP/s':>8} "
          f"{'vs minippo':>11}")
    medians = {name: statistics.median(t) for name, t in times.items()}
    base = medians["minippo"]
    for name, t in times.items():
        median = medians[name]
        ratio = "" if name == "minippo" else f"{median / base:10.2f}x"
        print(f"  {name:<14} {median * 1e3:10.1f} {min(t) * 1e3:9.1f} {tokens / median:11.0f} "
              f"{flops / median / 1e9:8.1f} {ratio:>11}")



def paired_ratios(times, name):
    """minippo's speed relative to ``name`` in each repeat: that implementation's time / minippo's time."""
    return [other / mine for other, mine in zip(times[name], times["minippo"])]


def quartiles(values):
    """(lower quartile, median, upper quartile)."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    lower, median, upper = statistics.quantiles(values, n=4, method="inclusive")
    return lower, median, upper


def format_ratios(ratios, unit="x"):
    """'median [lower quartile - upper quartile]', as ratios ("x") or percentages ("%")."""
    lower, median, upper = quartiles(ratios)
    if unit == "%":
        return f"{median:.0%} [{lower:.0%}-{upper:.0%}]"
    return f"{median:.2f}x [{lower:.2f}-{upper:.2f}]"


def verdict(times, target):
    """'meets target' when even the lower quartile of the paired ratios against every PyTorch peer
    reaches the target, 'below target' when the median misses it, 'borderline' in between."""
    peers = [quartiles(paired_ratios(times, name)) for name in times if name != "minippo"]
    if min(lower for lower, _, _ in peers) >= target:
        return "meets target"
    if min(median for _, median, _ in peers) >= target:
        return "borderline (median meets it, lower quartile does not)"
    return "below target"


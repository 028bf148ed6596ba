"""Where long work is: durations in human units, and progress lines with an ETA.

``format_duration`` writes any length of time the way a person reads it ("45s", "12m05s", "3h20m",
"5d04h", "> 1 year"); ``Progress`` prints "what done/total (percent), elapsed, ETA" for a loop, at
most once per ``interval`` seconds, so a loop of 10⁹ cheap steps prints a few lines, not 10⁹.

    progress = Progress(n_samples, "samples")
    for done in range(chunk, n_samples + chunk, chunk):
        ...                                       # one chunk of work
        progress.update(min(done, n_samples))     # prints "samples 4,096/1,000,000 (0%)  12s  ETA 48m30s"
"""
import math
import time

MINUTE, HOUR, DAY, YEAR = 60, 3600, 86_400, 365 * 86_400


def format_duration(seconds):
    """A duration in the two largest units that matter: 45s, 12m05s, 3h20m, 5d04h, "> 1 year".

    Rounds to whole seconds below an hour, to minutes below a day and to hours beyond; a
    negative duration is "0s" and an infinite or unknown (NaN) one "> 1 year" and "?".
    """
    if math.isnan(seconds):
        return "?"
    if seconds >= YEAR:
        return "> 1 year"
    seconds = max(0, round(seconds))
    if seconds < MINUTE:
        return f"{seconds}s"
    if seconds < HOUR:
        return f"{seconds // MINUTE}m{seconds % MINUTE:02d}s"
    minutes = round(seconds / MINUTE)
    if minutes < 24 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = round(seconds / HOUR)
    return f"{hours // 24}d{hours % 24:02d}h"


def eta_seconds(elapsed, done, total):
    """Time left if the remaining ``total − done`` units go at the rate so far: elapsed/done · (total − done)."""
    if done <= 0:
        return math.nan
    return elapsed / done * (total - done)


class Progress:
    """Progress of ``total`` units of work named ``what`` (e.g. "episodes"), printed through ``log``.

    ``update(done)`` prints a line when ``interval`` seconds have passed since the last one, and
    always when ``done == total`` (if a line was printed before, so quick work stays silent with the
    default interval).  ``start`` is the count already done when timing began (a resumed run), so the
    ETA uses only the rate of this run.
    """

    def __init__(self, total, what, log=print, interval=10.0, start=0, clock=time.perf_counter):
        self.total, self.what, self.log, self.interval, self.start = total, what, log, interval, start
        self.clock = clock
        self.started = clock()
        self.last_line = self.started
        self.printed = False

    def elapsed(self):
        return self.clock() - self.started

    def eta(self, done):
        """Seconds left at this run's rate (NaN before the first unit is done)."""
        return eta_seconds(self.elapsed(), done - self.start, self.total - self.start)

    def line(self, done):
        """"what done/total (p%)  elapsed  ETA t" for ``done`` units."""
        percent = math.floor(100 * done / self.total) if self.total else 100
        return (f"{self.what} {done:,}/{self.total:,} ({percent}%)  {format_duration(self.elapsed())}  "
                f"ETA {format_duration(self.eta(done))}")

    def update(self, done, detail=""):
        """Print the progress line for ``done`` units, followed by ``detail`` (e.g. a running mean), if one is
        due; returns True if it printed."""
        now = self.clock()
        finished = done >= self.total and self.printed
        if now - self.last_line < self.interval and not finished:
            return False
        self.last_line, self.printed = now, True
        self.log(f"{self.line(done)}  {detail}" if detail else self.line(done))
        return True

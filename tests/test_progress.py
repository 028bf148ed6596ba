"""Durations in human units and progress lines with an ETA (minippo.progress)."""
import math
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minippo.progress import YEAR, Progress, eta_seconds, format_duration


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (-3, "0s"), (45, "45s"), (59.4, "59s"), (59.6, "1m00s"), (725, "12m05s"), (3599.4, "59m59s"),
    (3599.6, "1h00m"), (12_000, "3h20m"), (86_399, "1d00h"), (5 * 86_400 + 4 * 3600, "5d04h"),
    (364 * 86_400, "364d00h"), (YEAR, "> 1 year"), (1398923505 * 60, "> 1 year"), (math.inf, "> 1 year"),
    (math.nan, "?"),
])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


@given(st.floats(min_value=0, max_value=YEAR - 1))
def test_format_duration_reads_back_within_its_rounding(seconds):
    text = format_duration(seconds)
    match = re.fullmatch(r"(?:(\d+)d(\d\d)h|(\d+)h(\d\d)m|(\d+)m(\d\d)s|(\d+)s)", text)
    assert match, text
    days, day_hours, hours, minutes, short_minutes, short_seconds, only_seconds = (
        int(group) if group else 0 for group in match.groups())
    value = (days * 24 + day_hours) * 3600 + (hours * 60 + minutes) * 60 + short_minutes * 60 + short_seconds \
        + only_seconds
    unit = 3600 if match.group(1) else 60 if match.group(3) else 1
    assert abs(value - seconds) <= unit / 2 + 1e-6
    assert day_hours < 24 and minutes < 60 and short_seconds < 60 and (not match.group(7) or only_seconds < 60)


def test_eta_is_the_rate_so_far_times_the_work_left():
    assert eta_seconds(10.0, 5, 20) == 30.0
    assert math.isnan(eta_seconds(10.0, 0, 20))


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_prints_at_most_once_an_interval_and_at_the_end():
    clock, lines = FakeClock(), []
    progress = Progress(1000, "samples", log=lines.append, interval=10, clock=clock)
    clock.now += 5
    assert not progress.update(100) and lines == []
    clock.now += 5
    assert progress.update(200)
    assert lines == ["samples 200/1,000 (20%)  10s  ETA 40s"]
    clock.now += 1
    assert not progress.update(300)
    clock.now += 1
    assert progress.update(1000) and lines[-1] == "samples 1,000/1,000 (100%)  12s  ETA 0s"


def test_quick_work_stays_silent_and_a_resumed_run_uses_its_own_rate():
    clock, lines = FakeClock(), []
    progress = Progress(10, "steps", log=lines.append, interval=10, clock=clock)
    clock.now += 1
    progress.update(10)
    assert lines == []
    progress = Progress(100, "steps", log=lines.append, interval=0, start=50, clock=clock)
    clock.now += 10
    progress.update(60)  # 10 steps in 10 s, 40 to go
    assert lines == ["steps 60/100 (60%)  10s  ETA 40s"]

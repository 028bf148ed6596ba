"""Tests for ``minippo mrp``: the seed example's table, --file, and clean errors for malformed files."""
import collections
import json
import re
import time

import pytest

from minippo.cli import main
from minippo.commands.mrp import display_width, run_example


def table_rows(output):
    """{state: [cells...]} for the table's state rows (the lines below the dashed rule)."""
    lines = output.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    return {line.split()[0]: line.split()[1:] for line in lines[rule + 1 :]}


def run_cli(argv, capsys):
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_default_is_the_seed_example_by_every_method(capsys):
    status, out, _ = run_cli(["mrp"], capsys)
    assert status == 0
    rows = table_rows(out)
    assert list(rows) == ["吃饭", "喝酒", "喝茶", "醉", "醒", "residual"]
    reward, direct, iterative, krylov, auto, mc, plus_minus, stderr = rows["吃饭"]
    assert reward == "6" and plus_minus == "±"
    assert direct == iterative == krylov == auto == "13.6800"
    assert abs(float(mc) - 13.68) <= 4 * float(stderr) and 0.02 < float(stderr) < 0.05
    assert rows["喝茶"][1:5] == ["8.2000"] * 4
    assert all(float(residual) < 1e-14 for residual in rows["residual"])
    assert "auto uses direct" in out


def test_table_is_aligned_with_cjk_names(capsys):
    _, out, _ = run_cli(["mrp"], capsys)
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    table = lines[rule - 1 : rule + 6]  # header, rule, five states: all end in the right-aligned last column
    assert len({display_width(line) for line in table}) == 1
    # The third cell (the "direct" column) ends in the same display column on every line.
    third_cell_ends = {display_width(re.match(r"\S+\s+\S+\s+\S+", line).group()) for line in table}
    assert len(third_cell_ends) == 1


def test_seed_and_gamma_options(capsys):
    _, first, _ = run_cli(["mrp", "--seed", "1", "--episodes", "200"], capsys)
    _, again, _ = run_cli(["mrp", "--seed", "1", "--episodes", "200"], capsys)
    _, other, _ = run_cli(["mrp", "--seed", "2", "--episodes", "200"], capsys)
    assert first == again and table_rows(first)["吃饭"][5] != table_rows(other)["吃饭"][5]
    _, out, _ = run_cli(["mrp", "--gamma", "1"], capsys)
    assert table_rows(out)["吃饭"][1:5] == ["17.0000"] * 4  # 6 + 0.5·(3 + 10) + 0.5·(5 + 4)


def test_run_example_prints_the_seed_table(capsys):
    assert run_example(seed=0) == 0
    assert table_rows(capsys.readouterr().out)["吃饭"][1] == "13.6800"


def test_file_option_solves_the_users_mrp(tmp_path, capsys):
    spec = {
        "gamma": 0.5,
        "rewards": {"上": 1, "下": 2, "终": 4},
        "transitions": {"上": {"下": 0.25, "终": 0.75}, "下": {"终": 1}},
    }
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    status, out, _ = run_cli(["mrp", "--file", str(path)], capsys)
    assert status == 0
    rows = table_rows(out)
    # V(下) = 2 + 0.5·4 = 4;  V(上) = 1 + 0.5·(0.25·4 + 0.75·4) = 3.
    assert rows["下"][1:5] == ["4.0000"] * 4 and rows["上"][1:5] == ["3.0000"] * 4
    del spec["gamma"]
    path.write_text(json.dumps(spec), encoding="utf-8")
    _, out, _ = run_cli(["mrp", "--file", str(path), "--gamma", "1"], capsys)
    assert table_rows(out)["上"][1] == "5.5000"  # 1 + 0.25·(2 + 4) + 0.75·4


def test_file_with_a_deterministic_chain(tmp_path, capsys):
    # BiCGSTAB breaks down on a → b → c; the krylov column falls back to LU instead of a traceback
    path = tmp_path / "chain.json"
    spec = {"gamma": 0.5, "rewards": {"a": 0, "b": 0, "c": 1}, "transitions": {"a": {"b": 1}, "b": {"c": 1}}}
    path.write_text(json.dumps(spec), encoding="utf-8")
    status, out, err = run_cli(["mrp", "--file", str(path)], capsys)
    assert status == 0 and err == ""
    rows = table_rows(out)
    assert rows["a"][1:5] == ["0.2500"] * 4 and rows["b"][1:5] == ["0.5000"] * 4 and rows["c"][1:5] == ["1.0000"] * 4


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"gamma": 0.8, "rewards": {',
         r"not valid JSON \(Expecting property name enclosed in double quotes: line 1 column 28 \(char 27\)\)"),
        ('[1, 2]', r"expected a JSON object with keys \"gamma\", \"rewards\" and \"transitions\"; got list"),
        ('{"gamma": 0.8, "rewards": {"a": 1}}', r"missing key 'transitions'"),
        ('{"rewards": {"a": 1}, "transitions": {}}', r"missing key 'gamma'"),
        ('{"gamma": 0.8, "reward": {"a": 1}, "transitions": {}}', r"unexpected key 'reward'"),
        ('{"gamma": "0.8", "rewards": {"a": 1}, "transitions": {"a": {}}}',
         r"gamma must be a finite number, got str '0.8'"),
        ('{"gamma": 2, "rewards": {"a": 1}, "transitions": {"a": {}}}', r"gamma must be in \[0, 1\], got 2"),
        ('{"gamma": 0.8, "rewards": {"a": 1, "b": 2}, "transitions": {"a": {"b": 0.7}}}',
         r"row 0 \(state 'a'\) of P sums to 0.7"),
        ('{"gamma": 0.8, "rewards": {"a": 1}, "transitions": {"a": {"b": 1}}}', r"rewards has no entry for state 'b'"),
        ('{"gamma": 0.8, "rewards": {"a": "one"}, "transitions": {"a": {}}}',
         r"rewards\['a'\] must be a number; got str"),
        ('{"gamma": 0.8, "rewards": {"a": 1}, "transitions": {"a": [1]}}', r"transitions\['a'\] must be a dict"),
        ('{"gamma": 1, "rewards": {"a": 1}, "transitions": {"a": {"a": 1}}}',
         r"gamma = 1 requires every state to reach a terminal state"),
    ],
)
def test_malformed_file_is_a_clean_error(tmp_path, capsys, content, message):
    path = tmp_path / "broken.json"
    path.write_text(content, encoding="utf-8")
    status, out, err = run_cli(["mrp", "--file", str(path)], capsys)
    assert status == 2 and out == ""
    assert err.startswith(f"minippo mrp: error: {path}: ")
    assert re.search(message, err), err


def test_missing_and_unreadable_files(tmp_path, capsys):
    status, _, err = run_cli(["mrp", "--file", str(tmp_path / "nope.json")], capsys)
    assert status == 2 and f"{tmp_path / 'nope.json'}: no such file" in err
    status, _, err = run_cli(["mrp", "--file", str(tmp_path)], capsys)
    assert status == 2 and "cannot read the file" in err
    (tmp_path / "latin1.json").write_bytes(b'{"gamma": 0.8, "rewards": {"\xe9": 1}}')
    status, _, err = run_cli(["mrp", "--file", str(tmp_path / "latin1.json")], capsys)
    assert status == 2 and "not UTF-8 text" in err


def test_bad_options_and_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["mrp", "--episodes", "1"])
    assert exit_info.value.code == 2 and "--episodes: expected an integer >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["mrp", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for option in ("--file", "--gamma", "--episodes", "--seed", '"transitions"', "terminal"):
        assert option in out


def write_spec(tmp_path, spec):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    return str(path)


# γ = 1 and an exit probability of 1e-6 per step: V(a) = 1e6, but value iteration needs ~4e7 sweeps to certify it
SLOW_CHAIN = {"gamma": 1, "rewards": {"a": 1, "end": 0}, "transitions": {"a": {"a": 0.999999, "end": 0.000001}}}


def test_methods_option_chooses_the_columns(capsys):
    status, out, _ = run_cli(["mrp", "--methods", "monte-carlo,direct"], capsys)
    assert status == 0
    header = out.splitlines()[3].split()
    assert header == ["state", "reward", "direct", "Monte", "Carlo", "±", "stderr"]
    assert table_rows(out)["吃饭"][1] == "13.6800"
    status, out, _ = run_cli(["mrp", "--methods", "krylov"], capsys)
    assert out.splitlines()[3].split() == ["state", "reward", "krylov"] and "Monte Carlo" not in out
    with pytest.raises(SystemExit) as exit_info:
        main(["mrp", "--methods", "direct,exact"])
    assert exit_info.value.code == 2
    assert "--methods: expected methods among direct, iterative, krylov, auto, monte-carlo" in capsys.readouterr().err


def test_slow_value_iteration_stops_at_its_cap_and_says_so(tmp_path, capsys):
    path = write_spec(tmp_path, SLOW_CHAIN)
    started = time.perf_counter()
    status, out, _ = run_cli(["mrp", "--file", path, "--methods", "direct,iterative", "--max-sweeps", "1000"], capsys)
    assert status == 0 and time.perf_counter() - started < 2
    assert table_rows(out)["a"][1] == "1000000.0000"
    assert re.search(r"iterative: stopped after 1,000 sweeps \(--max-sweeps 1000\), with ‖V − V\*‖∞ ≤ \S+, "
                     r"not yet 1e-10", out)
    status, out, _ = run_cli(["mrp", "--file", path, "--methods", "iterative", "--time-limit", "0.3"], capsys)
    assert status == 0 and time.perf_counter() - started < 4
    assert re.search(r"iterative: stopped after [\d,]+ sweeps \(--time-limit 0.3 s\)", out)


def test_monte_carlo_marks_truncated_estimates_in_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("minippo.mrp.monte_carlo.MAX_DEFAULT_STEPS", 1000)
    status, out, err = run_cli(["mrp", "--file", write_spec(tmp_path, SLOW_CHAIN), "--methods", "monte-carlo"],
                               capsys)
    assert status == 0 and err == ""
    rows = table_rows(out)  # an episode ends within 1,000 steps with probability 1e-3: nearly all are cut
    assert rows["a"][4] == "*" and 990 < float(rows["a"][1]) <= 1000 and rows["end"] == ["0", "0.0000", "±", "0.0000"]
    assert re.fullmatch(r"\* (99\d|1,000) episodes \(of 1,000 per state\) were still running after 1,000 steps "
                        r"and were cut short: the starred estimates are biased", out.splitlines()[-1])


def test_monte_carlo_stops_at_the_time_limit_with_what_it_has(capsys, monkeypatch):
    monkeypatch.setattr("minippo.mrp.monte_carlo.CHUNK_EPISODES", 50)
    started = time.perf_counter()
    status, out, _ = run_cli(["mrp", "--methods", "monte-carlo", "--episodes", str(10**12), "--time-limit", "0.2"],
                             capsys)
    assert status == 0 and time.perf_counter() - started < 2
    done = int(re.search(r"Monte Carlo: (\d+) episodes per state", out).group(1))
    assert 10 <= done < 10**12 and done % 10 == 0  # whole chunks of 50 episodes over 5 states
    assert f"Monte Carlo: stopped after {done:,} of {10**12:,} episodes per state (--time-limit 0.2 s)" in out
    assert abs(float(table_rows(out)["吃饭"][1]) - 13.68) < 1


def test_values_that_overflow_are_named_with_the_file(tmp_path, capsys):
    spec = {"gamma": 0.999, "rewards": {"a": 1e306, "b": 1e306}, "transitions": {"a": {"b": 1}, "b": {"a": 1}}}
    path = write_spec(tmp_path, spec)
    for methods in ("direct", "iterative", "krylov", "monte-carlo"):
        status, out, err = run_cli(["mrp", "--file", path, "--methods", methods, "--episodes", "2"], capsys)
        assert status == 2 and out == ""
        assert err.startswith(f"minippo mrp: error: {path}: the values overflow: ") and err.count("\n") == 1, err
        assert "V('a') = inf" in err or "V('a') = nan" in err


def test_direct_is_not_run_when_its_lu_could_not_fit(tmp_path, capsys, monkeypatch):
    # more than DIRECT_MAX_STATES, and from each state a step back or a jump far away: not grid-like, so auto
    # uses krylov; s0 is terminal and s1 leads to it, V(s1) = 1 + 0.9
    n = 1200
    transitions = {"s1": {"s0": 1.0}}
    for i in range(2, n):
        transitions[f"s{i}"] = collections.Counter({f"s{i - 1}": 0.5})
        transitions[f"s{i}"][f"s{i * 577 % n}"] += 0.5
    spec = {"gamma": 0.9, "rewards": {f"s{i}": 1 for i in range(n)}, "transitions": transitions}
    path = write_spec(tmp_path, spec)
    monkeypatch.setattr("minippo.sizes.available_memory", lambda: 10**9)
    status, out, _ = run_cli(["mrp", "--file", path, "--methods", "direct,krylov"], capsys)
    assert status == 0
    assert table_rows(out)["s1"][1:] == ["1.9000", "1.9000"] and "not run" not in out  # 17 MB fit in 1 GB
    monkeypatch.setattr("minippo.sizes.available_memory", lambda: 10**6)
    status, out, _ = run_cli(["mrp", "--file", path, "--methods", "direct,krylov"], capsys)
    assert status == 0 and table_rows(out)["s1"][1:] == ["n/a", "1.9000"]
    assert out.splitlines()[-1] == ("direct: not run: needs ~17.3 MB of memory (LU factors if they fill in "
                                    "17.3 MB); 1 MB available (auto uses krylov)")

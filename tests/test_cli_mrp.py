"""Tests for ``minippo mrp``: the seed example's table, --file, and clean errors for malformed files."""
import json
import re

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

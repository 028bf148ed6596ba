"""A user's own data on the command line: tokenizers, templates, JSON specs, long texts (issue 18)."""
import json

from minippo.cli import main


def test_an_mrp_spec_with_a_repeated_key_is_refused(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text('{"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}, "gamma": 0.5}', encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 2
    assert capsys.readouterr().err == f"minippo mrp: error: {path}: repeated key 'gamma'\n"
    path.write_text(json.dumps({"gamma": 0.9, "rewards": {"a": 1}, "transitions": {"a": {}}}), encoding="utf-8")
    assert main(["mrp", "--file", str(path)]) == 0

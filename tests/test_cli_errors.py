"""Every failure of the command line is one line on stderr, with status 2 for the user's input and 1 otherwise;
MINIPPO_DEBUG=1 adds the traceback; warnings are one line too."""
import os
import subprocess
import sys

import pytest

import minippo
import minippo.commands.mrp
from minippo.cli import main


def fail_with(error):
    def value_table(*args, **kwargs):
        raise error

    return value_table


@pytest.mark.parametrize("error, status, message", [
    (ValueError("spec.json: bad\n  details"), 2, "minippo mrp: error: spec.json: bad; details\n"),
    (PermissionError(13, "Permission denied", "out.npz"), 2,
     "minippo mrp: error: [Errno 13] Permission denied: 'out.npz'\n"),
    (OSError(28, "No space left on device"), 1, "minippo mrp: error: [Errno 28] No space left on device\n"),
    (MemoryError("Unable to allocate 7.45 GiB"), 1,
     "minippo mrp: error: out of memory (Unable to allocate 7.45 GiB); choose smaller sizes\n"),
    (ZeroDivisionError("division by zero"), 1, "minippo mrp: error: internal error, ZeroDivisionError: division by "
     "zero (set MINIPPO_DEBUG=1 to see the traceback)\n"),
])
def test_errors_are_one_line_with_their_status(monkeypatch, capsys, error, status, message):
    monkeypatch.delenv("MINIPPO_DEBUG", raising=False)
    monkeypatch.setattr(minippo.commands.mrp, "value_table", fail_with(error))
    assert main(["mrp"]) == status
    captured = capsys.readouterr()
    assert captured.err == message and captured.out == ""


def test_debug_shows_the_traceback(monkeypatch, capsys):
    monkeypatch.setenv("MINIPPO_DEBUG", "1")
    monkeypatch.setattr(minippo.commands.mrp, "value_table", fail_with(ZeroDivisionError("division by zero")))
    assert main(["mrp"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "in value_table" in err
    assert err.endswith("minippo mrp: error: internal error, ZeroDivisionError: division by zero "
                        "(set MINIPPO_DEBUG=1 to see the traceback)\n")


def test_ctrl_c_is_one_line_and_status_130(monkeypatch, capsys):
    monkeypatch.setattr(minippo.commands.mrp, "value_table", fail_with(KeyboardInterrupt()))
    assert main(["mrp"]) == 130
    assert capsys.readouterr().err == "minippo mrp: interrupted\n"


def test_warnings_are_one_line_without_source(tmp_path):
    script = ("import sys, warnings\n"
              "import minippo.commands.mrp as mrp\n"
              "from minippo.cli import main\n"
              "def table(*args, **kwargs):\n"
              "    warnings.warn('careful: this is odd', UserWarning)\n"
              "    return 'table'\n"
              "mrp.value_table = table\n"
              "sys.exit(main(['mrp']))\n")
    environment = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(minippo.__file__))}
    environment.pop("MINIPPO_DEBUG", None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                          cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and done.stdout == "table\n"
    assert done.stderr == "minippo mrp: warning: careful: this is odd\n"

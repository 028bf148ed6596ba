"""The whole repository passes ruff with the rules in pyproject.toml (pycodestyle, pyflakes, import order)."""
import pathlib
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_repository_passes_ruff():
    pytest.importorskip("ruff")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise",
                             str(REPO_ROOT)], cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, f"ruff found problems:\n{result.stdout}{result.stderr}"

"""The installed package must contain every module: a folder without __init__.py works in an editable
install but is left out of a wheel by ``packages = find:``; and the core must run without the optional
packages."""
import os
import pathlib
import subprocess
import sys

import pytest

import minippo
from minippo.cli import main

PACKAGE = pathlib.Path(minippo.__file__).parent
DATA_FOLDERS = {"data"}


def test_every_code_folder_is_a_package():
    for folder in PACKAGE.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and folder.name not in DATA_FOLDERS \
                and any(folder.glob("*.py")):
            assert (folder / "__init__.py").exists(), f"{folder} has modules but no __init__.py"


OPTIONAL_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "gymnasium", "matplotlib", "mpi4py",
                     "tensorboardX", "tensorboard")
WITHOUT_OPTIONAL_PACKAGES = f"""
import importlib.abc, sys

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {OPTIONAL_PACKAGES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)")

sys.meta_path.insert(0, Hide())
import numpy as np
import minippo, minippo.cli, minippo.hf
from minippo.nn import GPT
model = GPT.from_pretrained({str(pathlib.Path(__file__).parent / "fixtures" / "gpt2_tiny")!r})
assert np.isfinite(model.forward(np.array([[1, 2, 3]]))).all()
minippo.cli.build_parser()
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {OPTIONAL_PACKAGES!r})
assert not loaded, loaded
print("ok")
"""


def test_core_imports_and_runs_without_optional_packages():
    """minippo imports, builds its command line and loads and runs a Hugging Face directory with
    numpy and scipy alone: the optional packages are hidden from a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", WITHOUT_OPTIONAL_PACKAGES], capture_output=True, text=True,
                            check=False, env={**os.environ, "PYTHONPATH": str(PACKAGE.parent)}, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_the_version_is_written_once_in_minippo_init(tmp_path, capsys):
    """setup.cfg reads ``minippo.__version__`` (statically, as a build does), and ``minippo --version`` prints it."""
    setupcfg = pytest.importorskip("setuptools.config.setupcfg")
    (tmp_path / "minippo").mkdir()
    for name in ("setup.cfg", "README.md", "LICENSE"):
        (tmp_path / name).write_bytes((PACKAGE.parent / name).read_bytes())
    source = (PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert source.count(f'__version__ = "{minippo.__version__}"') == 1
    (tmp_path / "minippo" / "__init__.py").write_text(source.replace(minippo.__version__, "9.8.7"), encoding="utf-8")
    assert setupcfg.read_configuration(str(tmp_path / "setup.cfg"))["metadata"]["version"] == "9.8.7"
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out == f"minippo {minippo.__version__}\n"

"""The installed package must contain every module: a folder without __init__.py works in an editable
install but is left out of a wheel by ``packages = find:``."""
import pathlib

import minippo

PACKAGE = pathlib.Path(minippo.__file__).parent
DATA_FOLDERS = {"data"}


def test_every_code_folder_is_a_package():
    for folder in PACKAGE.rglob("*"):
        if folder.is_dir() and folder.name != "__pycache__" and folder.name not in DATA_FOLDERS \
                and any(folder.glob("*.py")):
            assert (folder / "__init__.py").exists(), f"{folder} has modules but no __init__.py"

"""Command-line sub-commands; each module registers one with ``register(subparsers)``."""
import argparse
import os


def integer_option(minimum):
    """argparse type for an integer option >= ``minimum`` (shared by the sub-commands).

    argparse names the option in the error: ``argument --seed: expected an integer >= 0, got '-1'``.
    """
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


def check_output_path(path, option):
    """Fail now rather than after training: ``path`` must not be a directory, and its parent
    directory must exist or be creatable (it is created)."""
    if os.path.isdir(path):
        raise ValueError(f"{option} {path} is a directory, not a file")
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as error:
        raise ValueError(f"{option} {path}: cannot create its directory ({error})") from error

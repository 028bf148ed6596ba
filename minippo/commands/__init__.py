"""Command-line sub-commands; each module registers one with ``register(subparsers)``."""
import argparse


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

"""Command-line sub-commands; each module registers one with ``register(subparsers)``."""

"""Command-line options generated from config dataclasses, ``--config FILE``, and ``config.json``.

Every field declared with :func:`minippo.checks.setting` becomes ``--field-name`` with the field's help,
its rule and its default in ``--help``; how the text is read follows the field's type and check:

    int, float, str          int(text), float(text) (an integral float such as 1e6 reads as an int), text
    bool                     --x / --no-x                          (argparse.BooleanOptionalAction)
    one_of(...)              choices
    optional(...)            also ``none``
    tuple                    comma-separated: --hidden-sizes 64,64
    a nested config          its fields prefixed with its name: --pretrain-steps

then the field's own check runs, so a bad value is an argparse error that names the option
(``argument --gamma: expected in [0, 1], got '1.5'``), not a traceback.

The options have no argparse default: a value is set only when given.  A command resolves its settings
in three layers -- its defaults (for train-ppo the preset or recipe), then the ``--config`` file (TOML or
JSON, keys as the options' names with ``_``), then the options given -- with :func:`chosen_settings` and
:func:`apply_settings`, and writes what it ran with :func:`write_config`, so that
``--config that/config.json`` runs the same settings again.
"""
import argparse
import json
import os
import re
from dataclasses import fields, is_dataclass, replace

from minippo import checks
from minippo.atomic import atomic_write

CONFIG_NAME = "config.json"  # the effective settings, beside a run's outputs


def option_name(dest):
    """``learning_rate`` -> ``--learning-rate``."""
    return "--" + dest.replace("_", "-")


def options_named(message, options):
    """``message`` with every setting it names as a config field -- ``n_head``, ``GPTConfig.n_embd`` --
    named as the option the user typed: ``options`` maps the fields' names to their options
    (``{"n_head": "--n-head"}``).  Only names with an underscore are replaced: a one-word name (``seed``,
    ``steps``) is also an English word, and a name inside a path (``runs/block_size.npz``) is left alone.
    An on/off setting written ``norm_adv=False`` becomes its switch, ``--no-norm-adv``.

        >>> options_named("GPTConfig.n_embd (96) must be divisible by n_head (5)",
        ...               {"n_embd": "--n-embd", "n_head": "--n-head"})
        '--n-embd (96) must be divisible by --n-head (5)'
    """
    names = sorted((name for name in options if "_" in name), key=len, reverse=True)
    if not names:
        return message
    pattern = re.compile(r"(?<![\w./\\-])(?:[A-Z]\w*Config\.)?(" + "|".join(map(re.escape, names))
                         + r")(=False|=True)?(?![\w/-])")

    def option(match):
        name, switch = options[match.group(1)], match.group(2)
        return name.replace("--", "--no-", 1) if switch == "=False" else name

    return pattern.sub(option, message)


def parser_options(parser):
    """``{dest: option}`` of the options of ``parser`` (the long spelling ``--x-y`` of dest ``x_y`` where
    there is one), for :func:`options_named`."""
    found = {}
    for action in parser._actions:  # (argparse keeps no public list of a parser's options)
        long = [option for option in action.option_strings if option.startswith("--")]
        if long:
            found[action.dest] = option_name(action.dest) if option_name(action.dest) in long else long[0]
    return found


def shown(value):
    """A setting's value as it is typed on the command line: 64,64 for a tuple, none for None."""
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def read_number(text):
    """An int if ``text`` is an integer (``1e6`` included), else a float; ValueError if neither."""
    try:
        return int(text)
    except ValueError:
        number = float(text)
        return int(number) if number.is_integer() and abs(number) < 2 ** 53 else number


READERS = {int: read_number, float: float, str: str,
           tuple: lambda text: tuple(read_number(part) for part in text.split(","))}
METAVARS = {int: "N", float: "X", tuple: "N,N", str: "TEXT"}


def option_type(spec, dest):
    """The argparse type of a field: ``none`` -> None, otherwise the reader of its annotation, then its check."""
    read, check = READERS.get(spec.type, str), spec.metadata.get("check")

    def parse(text):
        rule = getattr(check, "rule", spec.type.__name__)
        try:
            value = None if text.strip().lower() == "none" else read(text)
            return value if check is None else check(value, dest)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None

    parse.__name__ = spec.type.__name__  # argparse names the type in some messages
    return parse


def setting_fields(defaults, skip=(), prefix=""):
    """``(dest, field, value)`` of each setting of the dataclass instance ``defaults`` (nested configs
    flattened with their name as prefix: ``pretrain_steps``), leaving out the dests in ``skip``."""
    for spec in fields(defaults):
        dest, value = prefix + spec.name, getattr(defaults, spec.name)
        if dest in skip or "help" not in spec.metadata:
            continue
        if is_dataclass(value):
            yield from setting_fields(value, skip, prefix=f"{dest}_")
        else:
            yield dest, spec, value


def parsing(spec, dest):
    """``(how, rule)``: the ``add_argument`` keywords that read a field's option, and its rule for the help
    (empty where the choices or the on/off switch already say it)."""
    check = spec.metadata.get("check")
    if spec.type is bool:
        return {"action": argparse.BooleanOptionalAction}, ""
    if hasattr(check, "choices"):
        return {"choices": check.choices}, ""
    rule = "" if check in (None, checks.text) else f"; {check.rule}"
    return {"type": option_type(spec, dest), "metavar": METAVARS.get(spec.type, "TEXT")}, rule


def add_setting_options(parser, defaults, *, skip=(), aliases=None):
    """One option per setting of ``defaults`` (a config dataclass instance) except the dests in ``skip``;
    ``aliases`` maps a dest to extra spellings (``{"learning_rate": ["--lr"]}``).  The parser keeps each
    dest's check (``setting_checks``) for :func:`chosen_settings`."""
    aliases = aliases or {}
    setting_checks = parser.get_default("setting_checks") or {}
    for dest, spec, value in setting_fields(defaults, skip):
        how, rule = parsing(spec, dest)
        help_text = f"{spec.metadata['help']} (default: {shown(value)}{rule})".replace("%", "%%")
        parser.add_argument(option_name(dest), *aliases.get(dest, ()), dest=dest, default=argparse.SUPPRESS,
                            help=help_text, **how)
        setting_checks[dest] = spec.metadata.get("check")
    parser.set_defaults(setting_checks=setting_checks)


def add_config_option(parser):
    """``--config FILE``: settings from a TOML or JSON file, under the options given on the command line."""
    parser.add_argument("--config", metavar="FILE",
                        help="settings from a TOML (.toml) or JSON file, keys named as the options with _ "
                        f"(e.g. a run's {CONFIG_NAME}); options given on the command line override them")


def read_config_file(path, known):
    """The settings in the TOML or JSON file ``path``: a flat table whose keys are in ``known``."""
    if path.endswith(".toml"):
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise ImportError(f"{path}: reading TOML needs Python >= 3.11; write the settings as JSON") from None
        with open(path, "rb") as file:
            try:
                values = tomllib.load(file)
            except tomllib.TOMLDecodeError as error:
                raise ValueError(f"{path}: not valid TOML ({error})") from None
    else:
        with open(path, encoding="utf-8") as file:
            try:
                values = json.load(file)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a table of settings, got {type(values).__name__}")
    unknown = [key for key in values if key not in known]
    if unknown:
        raise ValueError(f"{path}: unknown setting {unknown[0]!r}; the settings are "
                         f"{checks.some_names(sorted(known), 8)}")
    return values


def chosen_settings(args):
    """``{dest: value}`` of the settings chosen for this run: the ``--config`` file's (each checked by its
    field's check; lists become tuples, as the options give them), then the options given."""
    chosen = {}
    if getattr(args, "config", None):
        for key, value in read_config_file(args.config, args.setting_checks).items():
            value = tuple(value) if isinstance(value, list) else value
            check = args.setting_checks[key]
            try:
                chosen[key] = value if check is None else check(value, key)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{args.config}: {error}") from None
    chosen.update({dest: getattr(args, dest) for dest in args.setting_checks if hasattr(args, dest)})
    return chosen


def apply_settings(config, chosen, skip=(), prefix=""):
    """``config`` with the values in ``chosen`` of its settings (by dest, nested configs too) but those in
    ``skip``; a value that fails its field's check, or a rule between fields, raises naming the options
    (``--rlhf-batch-size (6) must be a multiple of --rlhf-minibatch-size (16)``: :func:`options_named`)."""
    changes, options = {}, {}
    for spec in fields(config):
        value, dest = getattr(config, spec.name), prefix + spec.name
        if dest in skip:
            continue
        if is_dataclass(value):
            changes[spec.name] = apply_settings(value, chosen, skip, prefix=f"{dest}_")
        else:
            if "help" in spec.metadata:
                options[spec.name] = option_name(dest)
            if dest in chosen:
                changes[spec.name] = chosen[dest]
    try:
        return replace(config, **changes)
    except (TypeError, ValueError) as error:
        raise type(error)(options_named(str(error), options)) from None


def follow_learning_rate(chosen, defaults):
    """``chosen`` where ``min_learning_rate``, when not chosen, is the smaller of the learning rate and the
    default minimum of ``defaults`` (a cosine schedule's end must not exceed its peak)."""
    learning_rate = chosen.get("learning_rate", defaults.learning_rate)
    return {"min_learning_rate": min(learning_rate, defaults.min_learning_rate), **chosen}


def setting_values(config, skip=()):
    """``{dest: value}`` of every setting of ``config``, as :func:`chosen_settings` reads them back."""
    return {dest: value for dest, _, value in setting_fields(config, skip)}


def write_config(path, *values):
    """The settings (the merged ``{dest: value}`` dicts ``values``) as JSON, atomically."""
    merged = {key: value for part in values for key, value in part.items()}
    with atomic_write(path, "w", encoding="utf-8") as file:
        json.dump(merged, file, indent=2)
        file.write("\n")
    return path


def config_beside(path):
    """Where the settings of a run whose output is the file ``path`` go: ``runs/x.npz`` ->
    ``runs/x.config.json`` (named after the run, so that runs sharing a directory keep their own)."""
    return os.path.splitext(path)[0] + ".config.json"

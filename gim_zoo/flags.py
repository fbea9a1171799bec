"""absl flags generated from a config dataclass, so scripts never repeat field lists."""

import dataclasses

from absl import flags

from gim_zoo.data import DatasetNotFoundError
from gim_zoo.registry import UnknownModelError
from gim_zoo.runs import ConfigMismatchError

# Errors caused by the command line or the machine, reported as one line (no traceback).
USER_ERRORS = (UnknownModelError, DatasetNotFoundError, ConfigMismatchError, ValueError,
               FileNotFoundError, FloatingPointError)


def define_flags(config_cls):
    """One absl flag per dataclass field, typed by its default; help from config_cls.HELP."""
    helps = getattr(config_cls, "HELP", {})
    for field in dataclasses.fields(config_cls):
        default = field.default
        help_text = helps.get(field.name, field.name.replace("_", " "))
        definer = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}[type(default)]
        definer(field.name, default, help_text)


def config_from_flags(config_cls):
    values = flags.FLAGS
    return config_cls(**{f.name: values[f.name].value for f in dataclasses.fields(config_cls)})


def run_script(config_cls, job, show):
    """absl entry point for a script: flags from `config_cls`, `show(job(config))`, and
    one-line errors (no traceback) for USER_ERRORS."""
    import sys

    from absl import app

    define_flags(config_cls)

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {argv[1:]}")
        try:
            result = job(config_from_flags(config_cls))
        except USER_ERRORS as e:
            sys.exit(f"error: {e}")
        show(result)

    app.run(main)

"""absl flags generated from a config dataclass, so scripts never repeat field lists."""

import dataclasses

from absl import flags

from gim_zoo.cli import native_logs_captured

with native_logs_captured():  # TensorFlow's import-time CUDA probing, noise on CPU machines
    import tensorflow  # noqa: F401  (every script needs it; imported here, hushed)
    from gim_zoo.data import DatasetNotFoundError
from gim_zoo.registry import UnknownModelError
from .run_directory import ConfigMismatchError

# Errors caused by the command line or the machine, reported as one line (no traceback).
# OSError: read-only or full disks, a file where a folder should be (the message names
# the path and the operating system's error).
USER_ERRORS = (UnknownModelError, DatasetNotFoundError, ConfigMismatchError, ValueError,
               OSError, FloatingPointError)


# Help for fields many configs share; a config's own HELP entry wins.
COMMON_HELP = {
    "seed": "random seed: initial weights, data order, augmentation, label subsets",
    "batch_size": "examples per training batch",
    "learning_rate": "Adam learning rate",
    "epochs": "training epochs",
    "verbose": "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch",
    "data_dir": "Fashion-MNIST folder holding the four IDX .gz files (default: "
                "$GIM_ZOO_FASHION_MNIST_DIR, then /usr/share/datasets/fashion-mnist), or a "
                "tensorflow-datasets data dir",
    "max_examples": "use only the first N training examples (quick runs, tests); 0: all",
}


def help_for(config_cls, name):
    """The help text of field `name`: config_cls.HELP, then COMMON_HELP, else None."""
    return getattr(config_cls, "HELP", {}).get(name, COMMON_HELP.get(name))


def define_flags(config_cls, module_name=None, flag_values=None):
    """One absl flag per dataclass field, typed by its default; help from config_cls.HELP
    (or COMMON_HELP).

    The flags are registered as the main script's own (module_name, default sys.argv[0]:
    what absl calls the main module), so `script.py --help` lists them; otherwise absl
    files them under experiments.flags and shows them only with --helpfull."""
    import sys

    module_name = module_name or sys.argv[0]
    for field in dataclasses.fields(config_cls):
        default = field.default
        help_text = help_for(config_cls, field.name) or field.name.replace("_", " ")
        definer = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer,
                   float: flags.DEFINE_float, str: flags.DEFINE_string}[type(default)]
        definer(field.name, default, help_text, module_name=module_name,
                flag_values=flags.FLAGS if flag_values is None else flag_values)


def config_from_flags(config_cls):
    values = flags.FLAGS
    return config_cls(**{f.name: values[f.name].value for f in dataclasses.fields(config_cls)})


def run_main(main):
    """`absl.app.run(main)` with warnings and errors printed once, not INFO chatter.

    Why: without --verbosity, app.run lowers the level to INFO, so every SavedModel or
    TFLite conversion printed a dozen lines; and TensorFlow's logger, made at import
    before absl put its handler on the root logger, keeps a handler of its own, so each
    TensorFlow warning came out twice. --verbosity=0 brings the INFO lines back.

    Also: importing TensorFlow registers an absl start-up hook that lists the GPUs, which
    on a machine without one logs "failed call to cuInit" at error level, reading as a
    fault. The physical devices are listed here first, with that log captured (listing
    them leaves the logical devices and strategies free to configure)."""
    import logging
    import sys

    import tensorflow as tf
    from absl import app
    from absl import logging as absl_logging

    with native_logs_captured():
        tf.config.list_physical_devices()

    def quiet_main(argv):
        if not flags.FLAGS["verbosity"].present:
            absl_logging.set_verbosity(absl_logging.WARNING)
        if logging.getLogger("tensorflow").handlers:  # its own: don't also pass to root
            logging.getLogger("tensorflow").propagate = False
        return main(argv)

    try:
        app.run(quiet_main)
    except SystemExit as e:
        if e.code == 1 and asked_for_help(sys.argv[1:]):
            raise SystemExit(0) from None  # absl's help flags exit with 1: help is no error
        raise


HELP_FLAGS = {"-?", "-h", "--help", "--helpshort", "--helpfull", "--helpxml"}


def asked_for_help(args):
    """Whether absl would stop at a help flag: one among the flags, before a `--`."""
    for arg in args:
        if arg == "--":
            return False
        if arg in HELP_FLAGS:
            return True
    return False


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

    run_main(main)

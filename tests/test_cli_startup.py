"""`python -m gim_zoo list / info / --help` start without TensorFlow and print nothing to
stderr; export / demo keep TensorFlow's native log lines off the terminal."""

import json
import os
import sys
from pathlib import Path

from tests import subprocs

ROOT = Path(__file__).resolve().parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def python(*args):
    return subprocs.run([sys.executable, *args], check=False, cwd=ROOT, env=ENV)


def test_list_and_info_do_not_import_tensorflow():
    snippet = """
import contextlib, io, json, sys
from gim_zoo.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    main(["list"]); main(["info", "gim-fmnist-resnet"])
import gim_zoo
gim_zoo.info("gim-fmnist-resnet"); gim_zoo.list_models()
# gim_zoo.data itself is lazy (the registry's data sources live in gim_zoo.data.sources);
# its pipelines, splits and readers are not
heavy = sorted(m for m in ("tensorflow", "keras", "jax", "gim_zoo.zoo", "gim_zoo.data.pipelines",
                           "gim_zoo.data.splits", "gim_zoo.data.fashion_mnist",
                           "gim_zoo.data.datasets", "tensorflow_datasets")
               if m in sys.modules)
print(json.dumps({"heavy": heavy, "out": out.getvalue()}))
"""
    result = python("-c", snippet)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["heavy"] == []
    assert "gim-fmnist-resnet" in report["out"] and '"pretrained_files"' in report["out"]


def test_list_prints_names_and_nothing_on_stderr():
    result = python("-m", "gim_zoo", "list", "gim-fmnist-*")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    names = result.stdout.split()
    assert "gim-fmnist-resnet" in names and all(n.startswith("gim-fmnist-") for n in names)
    for args in (["--help"], ["info", "gim-fmnist-resnet"]):
        result = python("-m", "gim_zoo", *args)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)


def test_native_logs_are_captured_but_python_stderr_is_not():
    snippet = """
import logging, os, sys
from gim_zoo.cli import native_logs_captured
with native_logs_captured():
    os.write(2, b"native noise\\n")
    print("python message", file=sys.stderr)
    # as TensorFlow's logger does at import: a handler bound to the stderr of the moment
    logger = logging.getLogger("made_in_block")
    logger.addHandler(logging.StreamHandler())
print("after", file=sys.stderr)
logger.warning("handler made in the block, used after it")
try:
    with native_logs_captured():
        os.write(2, b"native detail\\n")
        raise RuntimeError("boom")
except RuntimeError:
    pass
try:
    with native_logs_captured(expected_errors=(ValueError,)):
        os.write(2, b"expected detail\\n")
        raise ValueError("a one-line user error")
except ValueError:
    pass
"""
    result = python("-c", snippet)
    assert result.returncode == 0, result.stderr
    assert "python message" in result.stderr and "after" in result.stderr
    assert "handler made in the block, used after it" in result.stderr
    assert "Logging error" not in result.stderr  # its stream was not closed under it
    assert "native noise" not in result.stderr
    assert "native detail" in result.stderr  # shown when the block fails
    assert "expected detail" not in result.stderr  # not for a one-line user error


def test_gim_zoo_attributes_are_lazy_but_there():
    # (gim_zoo.load and gim_zoo.data themselves import Keras: tests/test_zoo.py uses them)
    result = python("-c", "import gim_zoo, sys; assert 'keras' not in sys.modules; "
                          "assert gim_zoo.catalog.info is gim_zoo.info; "
                          "assert not hasattr(gim_zoo, 'no_such_thing'); "
                          "assert 'keras' not in sys.modules")
    assert result.returncode == 0, result.stderr


def test_training_scripts_help_shows_no_native_start_up_lines():
    """TensorFlow's import-time CUDA probing (C++ logging, not Python's) stays off `--help`."""
    for script in ("train.py", "make_speech_corpus.py"):
        result = python(f"training/{script}", "--help")
        assert "--seed" in result.stdout, result.stdout[-1500:]
        assert result.returncode == 0, (script, result.stderr[-1500:])  # absl's own: 1
        for noise in ("cudart_stub", "InitializeLog", "cuInit"):
            assert noise not in result.stderr, (script, result.stderr[-1500:])


def test_scripts_print_tensorflow_warnings_once_and_no_info_lines():
    """run_main (every script's absl entry point): absl's INFO default and TensorFlow's
    own log handler made each SavedModel export print a dozen lines, warnings twice; and
    TensorFlow's absl start-up hook printed "failed call to cuInit" on CPU machines."""
    snippet = """
from training.experiments.flags import run_main  # imports TensorFlow, as the scripts do
def main(argv):
    import tensorflow as tf
    tf.get_logger().info("an info line")
    tf.get_logger().warning("a warning line")
    from absl import logging
    logging.info("an absl info line")
run_main(main)
"""
    quiet = python("-c", snippet)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.count("a warning line") == 1, quiet.stderr
    for noise in ("an info line", "an absl info line", "cuInit"):
        assert noise not in quiet.stderr, quiet.stderr
    loud = python("-c", snippet, "--verbosity=0")  # the user asked for INFO
    assert "an info line" in loud.stderr and "an absl info line" in loud.stderr, loud.stderr

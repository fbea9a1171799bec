"""`python -m gim_zoo`: list, info, export, and one-line errors."""

import json
import os
import sys
from pathlib import Path

import pytest

from tests import subprocs

pytestmark = pytest.mark.slow  # each call is a fresh Python importing TensorFlow

ROOT = Path(__file__).resolve().parents[1]


def cli(*args):
    """`python -m gim_zoo ARGS` (a non-zero exit is returned, not raised: some tests want
    one; a timeout fails with the output's tail)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocs.run([sys.executable, "-m", "gim_zoo", *args], check=False, env=env,
                        cwd=ROOT)


def test_list_and_info():
    out = cli("list", "gim-*")
    assert out.returncode == 0 and out.stdout.split() == [
        "gim-espeak-audio", "gim-fmnist-resnet", "gim-fmnist-resnet-deep",
        "gim-fmnist-resnet-ticket", "gim-librispeech-audio", "gim-stl10-resnet"]
    details = json.loads(cli("info", "gim-stl10-resnet").stdout)
    assert details["encoder"]["widths"] == [64, 128, 256]


def test_unknown_model_and_unpublished_weights_are_one_line_errors(tmp_path):
    out = cli("info", "gim-fmist-resnet")
    assert out.returncode != 0 and "Did you mean: gim-fmnist-resnet" in out.stderr
    assert "Traceback" not in out.stderr
    out = cli("export", "gim-stl10-resnet", "--out", str(tmp_path / "x.tflite"))
    assert out.returncode != 0 and "not published yet" in out.stderr
    assert not (tmp_path / "x.tflite").exists()


def test_export_random_init_encoder_to_tflite(tmp_path):
    out = cli("export", "gim-fmnist-resnet", "--weights", "none", "--module", "2",
              "--out", str(tmp_path / "m2.tflite"))
    assert out.returncode == 0, out.stderr
    assert "(None, 28, 28, 1) -> (None, 1152)" in out.stdout  # 3x3 x 128 channels
    assert (tmp_path / "m2.tflite").stat().st_size > 0
    out = cli("export", "gim-fmnist-resnet", "--weights", "none", "--pool_to", "1",
              "--out", str(tmp_path / "global.tflite"))
    assert "(None, 28, 28, 1) -> (None, 256)" in out.stdout  # the paper's global pool


def test_export_of_another_sized_folder_needs_the_opt_in(tmp_path, tiny_encoder):
    """A user's own run of another size exports under a registry name only when asked."""
    from gim_zoo.presets import write_model_folder

    folder = write_model_folder(tiny_encoder, tmp_path / "mine", "gim-fmnist-resnet")
    out = cli("export", "gim-fmnist-resnet", "--weights", str(folder),
              "--out", str(tmp_path / "mine.tflite"))
    assert out.returncode != 0 and "allow_other_architecture" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "mine.tflite").exists()
    out = cli("export", "gim-fmnist-resnet", "--weights", str(folder),
              "--allow_other_architecture", "--out", str(tmp_path / "mine.tflite"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "mine.tflite").stat().st_size > 0

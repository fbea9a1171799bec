"""The commands of docs/own-images.md, end to end, in miniature: train.py -> probe.py ->
training/package.py -> gim_zoo.load(weights=FOLDER) -> `python -m gim_zoo export`, on

- the paper's STL-10 experiment (gim-stl10-resnet, test-size widths, pre-trained on the
  `unlabelled` split, probed on train/test), on tensorflow-datasets' mock data;
- folders of PNG files written from Fashion-MNIST (pre-trained on a flat, unlabelled
  folder; probed on a labelled one with train/ and test/ class subfolders);
- another mocked tfds dataset, CIFAR-10 (RGB, 32x32): the model built for 32x32x3.

Plus a folder run SIGKILLed mid-epoch that resumes to the uninterrupted run's weights.
Subprocesses (the real scripts; the tfds ones under tests/mock_tfds.py), hence slow.
"""

import json
import signal
import sys

import numpy as np
import pytest

from tests import subprocs
from tests.training_procs import ROOT, env, weights

pytestmark = pytest.mark.slow

TINY = ["--stem_width=8", "--widths=4,4,8", "--blocks=1,1,1", "--batch_size=16",
        "--final_eval_examples=16", "--verbose=0"]
MOCK_EXAMPLES = 48  # examples in every mocked tfds split


def python(*args, mock=False):
    """Run a script (or -m module) to completion; mock: under tfds' mock data."""
    prefix = [str(ROOT / "tests" / "mock_tfds.py"), str(MOCK_EXAMPLES)] if mock else []
    return subprocs.run([sys.executable, *prefix, *args], check=True, env=env(), cwd=ROOT)


def chain(tmp_path, model, train_flags, probe_flags=(), export_flags=(), mock=False):
    """train -> probe -> package -> load -> export; returns (run, folder, encoder, probe)."""
    run, folder, tflite = tmp_path / "run", tmp_path / "package", tmp_path / "encoder.tflite"
    python("training/train.py", f"--model={model}", f"--out_dir={run}", *TINY, *train_flags,
           mock=mock)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "complete", metrics
    python("training/probe.py", f"--run_dir={run}", "--labels_per_class=0", "--steps=30",
           "--verbose=0", *probe_flags, mock=mock)
    [probe_file] = sorted((run / "probes").glob("*.json"))
    probe = json.loads(probe_file.read_text())
    python("training/package.py", f"--model={model}", f"--run_dir={run}", f"--out_dir={folder}",
           *export_flags, mock=mock)
    packaged = json.loads((folder / "metrics.json").read_text())
    assert packaged["linear_probe"]["all"]["test_accuracy"] == probe["test_accuracy"]
    assert (folder / "encoder_int8.tflite").stat().st_size > 0

    import gim_zoo
    from gim_zoo.cli import main as gim_zoo_command

    encoder = gim_zoo.load(model, weights=folder, allow_other_architecture=True)
    # `python -m gim_zoo export ...`, in this process (one TensorFlow start-up fewer)
    gim_zoo_command(["export", model, f"--weights={folder}", "--allow_other_architecture",
                     "--format=tflite", f"--out={tflite}"])
    _same_outputs(encoder, folder / "encoder.tflite", tflite, model)
    return run, folder, encoder, probe


def _same_outputs(encoder, packaged_tflite, exported_tflite, model):
    """The loaded encoder, the package's TFLite file and the exported one agree."""
    from gim_zoo import registry
    from gim_zoo.exporting import TFLiteModel

    spec = registry.get(model)
    size, channels = encoder.image_size, encoder.channels
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, channels)).astype("f4")
    expected = np.asarray(encoder.feature_model(pool_to=spec.probe_pool_to)(images))
    for path in (packaged_tflite, exported_tflite):
        got = np.concatenate([TFLiteModel(path)(image[None]) for image in images])
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_the_papers_stl10_experiment_on_mock_data(tmp_path):
    data = ["--data_dir=" + str(tmp_path / "tfds")]
    run, folder, encoder, probe = chain(
        tmp_path, "gim-stl10-resnet",
        ["--epochs=1", f"--max_examples={MOCK_EXAMPLES}", "--eval_examples=16",
         *data], data, data, mock=True)
    config = json.loads((run / "config.json").read_text())
    assert (config["dataset"], config["image_size"], config["channels"]) == ("stl10", 64, 1)
    assert json.loads((run / "metrics.json").read_text())["train_examples"] == MOCK_EXAMPLES
    assert (encoder.image_size, encoder.channels, encoder.grid) == (64, 1, 7)
    assert probe["test_examples"] == MOCK_EXAMPLES and probe["pool_to"] == 1
    assert "STL-10" in (folder / "README.md").read_text()


def _write_fashion_folders(root):
    """A flat folder of 160 Fashion-MNIST PNGs and a labelled one (3 classes, train/ and
    test/ subfolders)."""
    import tensorflow as tf

    from gim_zoo.data import load_fashion_mnist

    images, labels = load_fashion_mnist("train")
    for i, image in enumerate(images[:160]):
        tf.io.write_file(str(root / "flat" / f"{i:04d}.png"), tf.io.encode_png(image))
    chosen = np.flatnonzero(labels[:600] < 3)[:120]
    for n, i in enumerate(chosen):
        split = "train" if n < 90 else "test"
        tf.io.write_file(str(root / "labelled" / split / f"class{labels[i]}" / f"{i:04d}.png"),
                         tf.io.encode_png(images[i]))


def test_a_folder_of_pngs_from_fashion_mnist(tmp_path):
    _write_fashion_folders(tmp_path)
    flat, labelled = f"folder/{tmp_path / 'flat'}", f"folder/{tmp_path / 'labelled'}"
    run, folder, encoder, probe = chain(
        tmp_path, "gim-fmnist-resnet", ["--epochs=2", f"--dataset={flat}",
                                        "--eval_examples=16"],
        [f"--dataset={labelled}"])
    config = json.loads((run / "config.json").read_text())
    assert (config["dataset"], config["test_fraction"]) == (flat, 0.1)  # stated hold-out
    assert json.loads((run / "metrics.json").read_text())["train_examples"] == 144
    assert (probe["dataset"], probe["train_examples"], probe["test_examples"]) == (
        labelled, 90, 30)
    assert probe["test_accuracy"] > 0.5  # three clothing classes, linearly separable
    card = (folder / "README.md").read_text()
    assert "the image folder" in card and "--dataset=" in card
    # the labelled folder also trains a supervised model directly
    supervised = tmp_path / "supervised"
    python("training/train.py", "--model=supervised-fmnist-resnet", f"--dataset={labelled}",
           f"--out_dir={supervised}", "--epochs=1", *TINY)
    metrics = json.loads((supervised / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["train_examples"] == 90


def test_another_tfds_dataset_rgb_and_of_another_size(tmp_path):
    data = ["--data_dir=" + str(tmp_path / "tfds")]
    run, folder, encoder, probe = chain(
        tmp_path, "gim-fmnist-resnet",
        ["--epochs=1", "--dataset=tfds/cifar10", "--image_size=32", "--channels=3",
         "--eval_examples=16", *data], data, data, mock=True)
    assert (encoder.image_size, encoder.channels, encoder.grid) == (32, 3, 7)
    assert json.loads((folder / "metrics.json").read_text())["training"]["input_shape"] == [
        32, 32, 3]
    assert probe["dataset"] == "tfds/cifar10"


def test_a_folder_run_killed_mid_epoch_resumes_to_the_uninterrupted_weights(tmp_path):
    from tests.conftest import TINY_FLAGS

    import tensorflow as tf

    rng = np.random.default_rng(0)
    for i in range(80):
        tf.io.write_file(str(tmp_path / "flat" / f"{i:03d}.png"),
                         tf.io.encode_png(rng.integers(0, 256, (28, 28, 1), dtype=np.uint8)))
    flags = ["training/train.py", "--model=gim-fmnist-resnet", *TINY_FLAGS,
             f"--dataset=folder/{tmp_path / 'flat'}", "--batch_size=8", "--epochs=2",
             "--eval_examples=8", "--final_eval_examples=8", "--verbose=0"]
    steps_per_epoch = 72 // 8
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    python(*flags, f"--out_dir={reference}")
    result = subprocs.run([sys.executable, *flags, f"--out_dir={killed}"], check=False,
                          env=env(GIM_ZOO_SIGKILL_AT_STEP=steps_per_epoch + 3), cwd=ROOT)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert not (killed / "metrics.json").exists()
    python(*flags, f"--out_dir={killed}")
    a, b = weights(killed / "model.weights.h5"), weights(reference / "model.weights.h5")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)

"""Issue 31's poor kinds: errors name the file and say what recovers it (a tampered bundled
file needs a reinstall), uploads without network or with an invalid repo id are one line,
OS errors while training name the path, empty batches give empty results and too-short
audio a clear error, and module-at-a-time training on random earlier modules warns."""

import errno

import numpy as np
import pytest

import gim_zoo
from gim_zoo import presets
from gim_zoo.presets import IntegrityError, PublishError, pin, publish, write_model_folder

NAME = "gim-fmnist-resnet"


@pytest.fixture
def bundled(tmp_path, monkeypatch, tiny_encoder):
    """A tiny bundled copy of NAME in a temporary package folder, pinned."""
    monkeypatch.setattr(presets, "BUNDLED_DIR", tmp_path / "pretrained")
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "pretrained" / "manifest.json")
    monkeypatch.delenv(presets.LOCAL_DIR_ENV, raising=False)
    folder = write_model_folder(tiny_encoder, tmp_path / "pretrained" / NAME, NAME,
                                {"README.md": "---\nlicense: apache-2.0\n---\ncard\n",
                                 "metrics.json": "{}"})
    pin(NAME, folder)
    return folder


# --- a tampered bundled file: only a reinstall helps --------------------------------------

def test_a_tampered_bundled_file_says_reinstall_not_delete(bundled):
    weights = bundled / "model.weights.h5"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as refused:
        gim_zoo.load(NAME)
    message = str(refused.value)
    assert f"{weights} failed its integrity check" in message
    assert "reinstall gim_zoo" in message and "delete it" not in message
    weights.unlink()
    with pytest.raises(IntegrityError, match="model.weights.h5 is missing.*reinstall gim_zoo"):
        gim_zoo.load(NAME)


def test_a_damaged_bundled_metrics_file_is_named_by_info(bundled):
    (bundled / "metrics.json").write_text("{cut short")
    with pytest.raises(ValueError, match=f"{bundled / 'metrics.json'} is not valid JSON.*"
                                         "reinstall gim_zoo"):
        gim_zoo.info(NAME)


# --- publishing: invalid repo id, no network ------------------------------------------------

@pytest.mark.parametrize("repo_id", ["not a valid id!!", "org/", "", "a/b/c", "org/-x"])
def test_an_invalid_repo_id_is_one_line_before_anything_is_sent(standin, bundled, repo_id):
    with pytest.raises(PublishError, match="is not a valid Hub repository id") as refused:
        publish(bundled, repo_id, token=standin.token, endpoint=standin.endpoint)
    assert "\n" not in str(refused.value)
    assert standin.requests == []


def test_an_upload_without_network_is_one_line(standin, bundled):
    import socket

    with socket.socket() as s:  # a port on which nothing listens: the Hub is unreachable
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(PublishError, match=f"cannot reach the Hub at {endpoint}.*nothing was "
                                           "uploaded") as refused:
        publish(bundled, "gim-zoo-test/offline", token=standin.token, endpoint=endpoint)
    assert "\n" not in str(refused.value)


# --- empty and degenerate inputs ------------------------------------------------------------

def test_an_empty_image_batch_gives_empty_results_through_call_and_predict(tiny_encoder):
    empty = np.zeros((0, 28, 28, 1), "float32")
    assert tuple(tiny_encoder(empty).shape) == (0, 7, 7, 16)
    assert tiny_encoder.predict(empty, verbose=0).shape == (0, 7, 7, 16)
    assert [tuple(o.shape) for o in tiny_encoder.module_outputs(empty)] == [
        (0, 7, 7, 8), (0, 7, 7, 8), (0, 7, 7, 16)]
    features = tiny_encoder.feature_model(module=2, pool_to=3)
    assert tuple(features(empty).shape) == (0, 72)
    assert features.predict(empty, verbose=0).shape == (0, 72)
    with pytest.raises(ValueError, match=r"expects images of shape \(batch, 28, 28, 1\)"):
        tiny_encoder(np.zeros((0, 28, 28, 3), "float32"))


def audio_encoder():
    from gim_zoo.models.audio import AudioEncoder

    return AudioEncoder(channels=8, gru_units=8, crop_samples=1600)


def test_an_empty_audio_batch_gives_empty_results_through_call_and_predict():
    encoder = audio_encoder()
    empty = np.zeros((0, 1600), "float32")
    assert tuple(encoder(empty).shape) == (0, 10, 8)  # 10 frames, not 1600
    assert encoder.predict(empty, verbose=0).shape == (0, 10, 8)
    features = encoder.feature_model(module=3)
    assert tuple(features(empty).shape) == (0, 10, 8)
    assert features.predict(empty, verbose=0).shape == (0, 10, 8)


@pytest.mark.parametrize("shape", [(2, 0), (0, 0), (2, 100)])
def test_audio_shorter_than_one_frame_is_a_clear_error(shape):
    encoder = audio_encoder()
    waves = np.zeros(shape, "float32")
    for run in (encoder, lambda w: encoder.predict(w, verbose=0)):
        with pytest.raises(ValueError, match=f"at least one 160-sample frame .*got "
                                             f"{shape[1]} samples"):
            run(waves)


# --- training: OS errors name the path; random earlier modules warn ---------------------------

def test_os_errors_while_training_name_the_run_directory(tmp_path):
    import tensorflow as tf

    from training.experiments.pretraining import os_errors_naming

    run = tmp_path / "run"
    with pytest.raises(OSError, match=f"No space left on device: '{run}'"):
        with os_errors_naming(run):  # CSVLogger's write on a full disk names no file
            raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=f"^{run / 'logs'} is not a directory$"):
        with os_errors_naming(run):  # TensorBoard's writer, in TensorFlow's words
            raise tf.errors.FailedPreconditionError(
                None, None, "{{function_node __wrapped__CreateSummaryFileWriter}} "
                f"{run / 'logs'} is not a directory [Op:CreateSummaryFileWriter] name: ")
    with pytest.raises(tf.errors.FailedPreconditionError):  # about something else: as is
        with os_errors_naming(run):
            raise tf.errors.FailedPreconditionError(None, None, "an uninitialised value")


@pytest.mark.slow  # train.py's start in-process: data, model, TensorBoard
def test_a_blocked_logs_folder_is_one_line_naming_it(tmp_path):
    import dataclasses

    from training.experiments.pretraining import TrainConfig, train
    from training.experiments.run_directory import RunDirectory

    config = TrainConfig(out_dir=str(tmp_path / "run"), epochs=1, stem_width=8,
                         widths="4,4,8", blocks="1,1,1", max_examples=64, batch_size=32,
                         eval_examples=32, verbose=0)
    RunDirectory(config.out_dir).prepare(dataclasses.asdict(config.resolved()))
    (tmp_path / "run" / "logs").write_text("a file where TensorBoard's folder goes")
    with pytest.raises(OSError, match=f"{tmp_path / 'run' / 'logs'} is not a directory"):
        train(config)


def test_training_module_k_without_init_from_warns(tmp_path, capsys):
    import fcntl

    from training.experiments.pretraining import TrainConfig, train, warn_about_random_modules
    from training.experiments.run_directory import RunLockedError

    assert not warn_about_random_modules(TrainConfig(out_dir="x", train_module=1).resolved())
    assert not warn_about_random_modules(
        TrainConfig(out_dir="x", train_module=2, init_from="runs/m1").resolved())
    run = tmp_path / "m2"
    run.mkdir()
    with open(run / "run.lock", "a") as held:  # stop train() right after its checks
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(RunLockedError):
            train(TrainConfig(out_dir=str(run), train_module=3))
    warning = capsys.readouterr().err
    assert ("warning: --train_module=3 without --init_from: modules 1-2 stay frozen at "
            "their random initialisation") in warning and "--init_from=RUN_DIR" in warning

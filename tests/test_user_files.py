"""Issue 31, bad cases 1-2: nothing a user owns is deleted or replaced (packaging and
export targets), and weights are matched by name and shape, never partly by position."""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import gim_zoo
from gim_zoo import presets
from gim_zoo.files import OutputExistsError
from tests import subprocs
from tests.test_robustness import NAME, _fake_run, listing

ROOT = Path(__file__).resolve().parents[1]
DEEP_WEIGHTS = ROOT / "gim_zoo" / "pretrained" / "gim-fmnist-resnet-deep" / "model.weights.h5"
SMALL_WEIGHTS = ROOT / "gim_zoo" / "pretrained" / NAME / "model.weights.h5"


@pytest.fixture(autouse=True)
def private_manifest(tmp_path, monkeypatch):
    """Nothing here may touch the package's bundled copies or manifest."""
    monkeypatch.setattr(presets, "BUNDLED_DIR", tmp_path / "bundled")
    monkeypatch.setattr(presets, "MANIFEST_PATH", tmp_path / "bundled" / "manifest.json")


@pytest.fixture
def run_dir(tmp_path, tiny_encoder):
    return _fake_run(tmp_path / "runs" / "r", tiny_encoder)


# 1. package.py --out_dir ----------------------------------------------------------------

@pytest.mark.parametrize("where", ["the run", "inside the run", "runs", "."])
@pytest.mark.parametrize("overwrite", [False, True])
def test_packaging_refuses_the_run_directory_its_inside_and_its_parents(
        tmp_path, run_dir, monkeypatch, where, overwrite):
    from training.experiments.packaging import package_run

    monkeypatch.chdir(tmp_path / "runs")
    out = {"the run": run_dir, "inside the run": run_dir / "model", "runs": tmp_path / "runs",
           ".": Path(".")}[where]
    before = listing(tmp_path)
    with pytest.raises(OutputExistsError, match="run directory"):
        package_run(NAME, run_dir, out, overwrite=overwrite)
    assert listing(tmp_path) == before


@pytest.mark.parametrize("overwrite", [False, True])
def test_packaging_refuses_a_users_folder(tmp_path, run_dir, overwrite):
    from training.experiments.packaging import package_run

    thesis = tmp_path / "thesis"
    (thesis / "src").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    (thesis / "src" / "main.py").write_text("print('mine')")
    before = listing(thesis)
    with pytest.raises(OutputExistsError, match=r"(?s)not a model folder.*src/, thesis.tex"):
        package_run(NAME, run_dir, thesis, overwrite=overwrite)
    assert listing(thesis) == before


def test_packaging_replaces_its_own_model_folder_only_with_overwrite(tmp_path, run_dir):
    from training.experiments.packaging import package_run

    out = tmp_path / "models" / NAME
    package_run(NAME, run_dir, out)
    assert presets.is_model_folder(out)
    first = listing(out)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        package_run(NAME, run_dir, out)
    assert listing(out) == first
    package_run(NAME, run_dir, out, overwrite=True)
    assert presets.is_model_folder(out)
    # a user's file put into the model folder makes it theirs: never replaced
    (out / "my-notes.txt").write_text("mine")
    before = listing(out)
    with pytest.raises(OutputExistsError, match="my-notes.txt"):
        package_run(NAME, run_dir, out, overwrite=True)
    assert listing(out) == before
    # an edited card too (its sha256 no longer matches metadata.json)
    (out / "my-notes.txt").unlink()
    (out / "README.md").write_text("my own card")
    with pytest.raises(OutputExistsError, match="not a model folder"):
        package_run(NAME, run_dir, out, overwrite=True)
    assert (out / "README.md").read_text() == "my own card"
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_an_empty_folder_is_a_fine_target(tmp_path, run_dir):
    from training.experiments.packaging import package_run

    out = tmp_path / "empty"
    out.mkdir()
    package_run(NAME, run_dir, out)
    assert presets.is_model_folder(out)


@pytest.mark.slow
def test_package_script_refuses_its_run_directory_and_a_users_folder(tmp_path, run_dir):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    before = listing(tmp_path)
    # each refusal with and without --overwrite is tested in-process above; here the
    # script's own path, one case of each kind (a process costs a TensorFlow start-up)
    cases = ((run_dir, ()), (mine, ("--overwrite",)), (tmp_path / "runs", ("--overwrite",)))
    for out, extra in cases:
        proc = subprocs.run([sys.executable, "training/package.py", f"--model={NAME}",
                             f"--run_dir={run_dir}", f"--out_dir={out}", *extra],
                            check=False, env=env, cwd=ROOT)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.startswith("error: ") and str(out) in proc.stderr, proc.stderr
    assert listing(tmp_path) == before


# export --overwrite of a SavedModel folder -------------------------------------------------

def test_saved_model_overwrite_never_deletes_a_users_other_files(tmp_path, tiny_encoder):
    from gim_zoo.exporting import export_saved_model

    model = tiny_encoder.feature_model(pool_to=1)
    saved = export_saved_model(model, tmp_path / "saved", overwrite=False)
    (saved / "README.txt").write_text("my notes on this export")
    before = listing(saved)
    with pytest.raises(OutputExistsError, match="README.txt"):
        export_saved_model(model, saved, overwrite=True)
    assert listing(saved) == before
    (saved / "README.txt").unlink()
    export_saved_model(model, saved, overwrite=True)  # a plain SavedModel: replaced
    assert (saved / "saved_model.pb").is_file()


# 2. weights by name and shape --------------------------------------------------------------

def test_a_deeper_models_weights_file_is_refused_not_partly_loaded():
    with pytest.raises(presets.ModelMismatchError,
                       match=r"(?s)another architecture than gim-fmnist-resnet's encoder: "
                             r"18 of the file's 32 arrays are not the model's.*"
                             r"pre_act_bottleneck_1"):
        gim_zoo.load(NAME, weights=DEEP_WEIGHTS)
    with pytest.raises(presets.ModelMismatchError, match="18 of the model's 32 arrays are "
                                                         "not in the file"):
        gim_zoo.load("gim-fmnist-resnet-deep", weights=SMALL_WEIGHTS)


def test_the_right_weights_file_loads_and_the_opt_out_loads_what_matches(caplog):
    from gim_zoo.registry import get

    pretrained = get(NAME).build_encoder()
    pretrained.load_weights(SMALL_WEIGHTS)  # Keras' own load of the matching file
    from_file = gim_zoo.load(NAME, weights=SMALL_WEIGHTS)
    for a, b in zip(pretrained.get_weights(), from_file.get_weights()):
        np.testing.assert_array_equal(a, b)
    with caplog.at_level("WARNING", logger="gim_zoo.presets.folder"):
        gim_zoo.load(NAME, weights=DEEP_WEIGHTS, allow_other_architecture=True)
    assert "only matching arrays load" in caplog.text


def test_weights_of_other_shapes_are_named(tmp_path, tiny_encoder):
    from gim_zoo.registry import get

    path = tmp_path / "tiny.weights.h5"
    tiny_encoder.save_weights(path)
    other = get(NAME).build_encoder(stem_width=8, widths=(4, 4, 16), blocks=(1, 1, 1))
    with pytest.raises(presets.ModelMismatchError, match=r"have another shape .*\[1, 1, 4, 8\] "
                                                         r"\(model: \[1, 1, 4, 16\]\)"):
        presets.load_weights_checked(other, path)


def test_empty_weights_argument_is_not_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="weights=''"):
        gim_zoo.load(NAME, weights="")


def test_init_from_a_run_of_another_architecture_is_refused(tmp_path, tiny_encoder):
    from training.experiments.pretraining import TrainConfig, train
    from tests.test_robustness import TINY_CONFIG

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DEEP_WEIGHTS, other / "encoder.weights.h5")
    config = TrainConfig(out_dir=str(tmp_path / "r"), epochs=1, init_from=str(other),
                         **TINY_CONFIG)
    with pytest.raises(presets.ModelMismatchError, match="another architecture"):
        train(config)


@pytest.mark.slow
def test_export_cli_refuses_weights_of_another_architecture(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocs.run([sys.executable, "-m", "gim_zoo", "export", NAME, "--weights",
                         str(DEEP_WEIGHTS), "--out", str(tmp_path / "e.tflite")],
                        check=False, env=env, cwd=ROOT)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "another architecture" in proc.stderr and not (tmp_path / "e.tflite").exists()

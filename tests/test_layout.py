"""The layout's rules (docs/layout.md): the library stands on its own."""

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests import subprocs

LIBRARY = Path(__file__).resolve().parents[1] / "gim_zoo"
FORBIDDEN = ("absl", "matplotlib", "experiments", "training")


def imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_library_imports_no_driver_flags_or_plotting():
    offending = [f"{path.relative_to(LIBRARY.parent)}: {module}"
                 for path in sorted(LIBRARY.rglob("*.py"))
                 for module in imported_modules(path)
                 if module.split(".")[0] in FORBIDDEN]
    assert offending == [], "gim_zoo/ must not import absl, matplotlib or training/"


def test_the_rule_sees_a_forbidden_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from experiments.pretraining import train\n")
    assert list(imported_modules(sample)) == ["experiments.pretraining"]


def registered_class_names():
    """Classes decorated with register_keras_serializable in gim_zoo/models/, by name."""
    names = set()
    for path in sorted((LIBRARY / "models").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    "register_keras_serializable" in ast.unparse(d) for d in node.decorator_list):
                names.add(node.name)
    return names


@pytest.mark.slow
def test_importing_gim_zoo_models_registers_every_model_class():
    """A model folder's config.json deserialises with plain Keras after `import
    gim_zoo.models` (a fresh process: nothing else imported first)."""
    config = LIBRARY / "pretrained" / "gim-fmnist-resnet" / "config.json"
    code = ("import json, keras, gim_zoo.models; "
            "print(json.dumps(sorted(k.split('>')[1] for k in keras.saving.get_custom_objects()"
            " if k.startswith('gim_zoo>')))); "
            f"m = keras.saving.deserialize_keras_object(json.load(open({str(config)!r}))); "
            "print(type(m).__name__)")
    proc = subprocs.run([sys.executable, "-c", code], env={
        **os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    registered, built = proc.stdout.strip().splitlines()[-2:]
    assert set(json.loads(registered)) == registered_class_names()
    assert built == "PatchResNetEncoder"


def test_presets_take_the_spec_they_are_given():
    """The load path runs one way: zoo.load looks the name up in the registry once and
    hands the spec down; presets never look it up again."""
    offending = [f"{path.name}: {node.module}" for path in sorted((LIBRARY / "presets").glob("*.py"))
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.ImportFrom) and node.module
                 and ("registry" in node.module
                      or any(a.name == "registry" for a in node.names))]
    assert offending == []


RECORD = ["config.json", "metrics.json", "probes/labels60-module3-pool3-seed0.json",
          "history.csv", "loss_curves.png", "encoder.weights.h5",
          "logs/train/events.out.tfevents.1.vm.1.1.v2"]
WORKING_FILES = ["backup/latest.weights.h5", "backup/latest.weights.h5.sha256",
                 "model.weights.h5", "run.lock", ".tmp-12-metrics.json", "encoder.tflite"]


def _ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", path],
                          cwd=LIBRARY.parent, capture_output=True)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode == 0


@pytest.mark.skipif(shutil.which("git") is None or not (LIBRARY.parent / ".git").exists(),
                    reason="needs a git checkout")
def test_gitignore_keeps_a_runs_record_and_leaves_out_its_working_files():
    for name in RECORD:
        assert not _ignored(f"runs/some-run/{name}"), name
    for name in WORKING_FILES:
        assert _ignored(f"runs/some-run/{name}"), name
    ticket, control = "runs/lth/gim60k-ticket-seed0", "runs/lth/gim60k-reinit-seed0"
    for name in ("rounds/masks03.npz", "rewind_point.npz"):  # the ticket itself
        assert not _ignored(f"{ticket}/{name}") and _ignored(f"{control}/{name}"), name
    assert _ignored(f"{ticket}/rounds/trained03.weights.h5")
    tracked_but_ignored = subprocess.run(
        ["git", "ls-files", "-ci", "--exclude-standard", "runs"], cwd=LIBRARY.parent,
        capture_output=True, text=True).stdout.split()
    assert tracked_but_ignored == []


def public_definitions():
    """{name: [files]} of the module-level public functions and classes in gim_zoo/ and
    training/experiments/."""
    found = {}
    for folder in (LIBRARY, LIBRARY.parent / "training" / "experiments"):
        for path in sorted(folder.rglob("*.py")):
            for node in ast.parse(path.read_text()).body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and \
                        not node.name.startswith("_") and node.name != "main":
                    found.setdefault(node.name, []).append(
                        str(path.relative_to(LIBRARY.parent)))
    return found


def test_no_two_public_functions_or_classes_share_a_name():
    """One name, one meaning: two `encode`s or two `read_manifest`s of different meanings
    read as one thing (a script's `main` is the only name allowed twice)."""
    assert {name: files for name, files in public_definitions().items()
            if len(files) > 1} == {}


def module_level_calls(path):
    """Calls a module makes when imported (statements at its top level that are calls,
    `with` blocks), besides `if __name__ == "__main__"`."""
    calls = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            calls.append(ast.unparse(node)[:80])
        elif isinstance(node, ast.With):
            calls.append("with " + ast.unparse(node.items[0])[:70])
    return calls


def test_importing_a_package_module_does_nothing_but_define_things():
    """No import side effects: no mallopt, no environment variables, no matplotlib
    backend for every importer. Allowed: __main__.py (the entry point) and flags.py's
    TensorFlow import with its CUDA probing lines captured (the import itself)."""
    allowed = {("gim_zoo/__main__.py", "main()"),
               ("training/experiments/flags.py", "with native_logs_captured()")}
    found = [(str(path.relative_to(LIBRARY.parent)), call)
             for folder in (LIBRARY, LIBRARY.parent / "training" / "experiments")
             for path in sorted(folder.rglob("*.py")) for call in module_level_calls(path)]
    assert [f for f in found if f not in allowed] == []

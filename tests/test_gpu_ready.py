"""GPU-ready training, tested on the CPU (docs/gpu.md): XLA-compiled train steps give the
plain steps' losses and weights, the new flags are checked and recorded in config.json,
and a run killed with XLA, steps_per_execution or mixed precision resumes bit for bit.

Mixed precision's own tests run under both backends: tests/neutral/test_neutral_precision.py.
"""

import dataclasses
import math
import os
import random
import signal

import keras
import numpy as np
import pytest

from training.experiments.pretraining import TrainConfig
from training.experiments.run_directory import ConfigMismatchError, RunDirectory
from gim_zoo.callbacks.backup import ResumableBackup
from gim_zoo.registry import get
from tests.conftest import TINY_ENCODER
from tests.subprocs import tail
from tests.test_faults import EPOCHS, assert_same_run
from tests.training_procs import STEPS_PER_EPOCH, cached_run, run, start, wait_all

# name: (registry model, train_module): every kind of train step the zoo has
XLA_CASES = {"gim": ("gim-fmnist-resnet", None), "gim-module2": ("gim-fmnist-resnet", 2),
             "loco": ("loco-fmnist-resnet-deep", None), "cpc": ("cpc-fmnist-resnet", None),
             "supervised": ("supervised-fmnist-resnet", None)}


def stripes(n=16):
    """Images that repeat one random row down the image (the loss has something to
    learn), and labels for the supervised model."""
    rows = np.random.default_rng(0).uniform(0, 255, size=(n, 1, 28, 1)).astype("float32")
    return np.repeat(rows, 28, axis=1), np.arange(n) % 10


@pytest.mark.slow  # XLA compiles each train step for 10-40 s on 2 cores
@pytest.mark.parametrize("case", XLA_CASES)
def test_xla_train_steps_give_the_plain_steps_losses_and_weights(case):
    """Same seed, same batches, 4 Adam steps: with jit_compile=True the step runs under XLA
    (negative sampling included) and ends where the plain step does. Measured: losses
    within 3e-7 (relative), weights within 1.4e-6; different negatives would move the
    losses by about 1e-3."""
    name, train_module = XLA_CASES[case]
    spec = get(name)
    images, labels = stripes()
    results = {}
    for jit in (False, True):
        keras.utils.set_random_seed(0)
        model = spec.build_model(TINY_ENCODER, train_module, seed=0)
        supervised = spec.objective == "supervised"
        model.compile(keras.optimizers.Adam(1e-2),
                      *(["sparse_categorical_crossentropy"] if supervised else []),
                      jit_compile=jit)
        assert model.jit_compile is jit  # Keras did not fall back
        history = model.fit(images, *([labels] if supervised else []), batch_size=16,
                            epochs=4, verbose=0, shuffle=False).history
        results[jit] = (np.array(history["loss"]),
                        [keras.ops.convert_to_numpy(v) for v in model.weights])
    (plain_loss, plain_weights), (xla_loss, xla_weights) = results[False], results[True]
    assert plain_loss[-1] < plain_loss[0], plain_loss  # it trained
    np.testing.assert_allclose(xla_loss, plain_loss, rtol=1e-5)
    assert len(xla_weights) == len(plain_weights)
    for a, b in zip(xla_weights, plain_weights):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.slow  # three XLA compiles of the GIM train step
def test_an_xla_run_resumed_from_its_backup_ends_where_the_unbroken_one_does(tmp_path):
    """XLA's resume in-process (the subprocess kill cases with XLA are opt-in, see
    RESUME_CASES): two XLA-compiled Adam epochs straight, against one epoch, a fresh model
    restored from its backup by ResumableBackup and the second epoch: same weights,
    optimizer state and losses, bit for bit."""
    images, _ = stripes()

    def xla_model():
        keras.utils.set_random_seed(0)
        model = get("gim-fmnist-resnet").build_model(TINY_ENCODER, None, seed=0)
        model.compile(keras.optimizers.Adam(1e-2), jit_compile=True)
        return model

    def fit(model, backup_dir, epochs):
        backup = ResumableBackup(backup_dir)
        return model.fit(images, batch_size=8, epochs=epochs, verbose=0, shuffle=False,
                         initial_epoch=backup.initial_epoch, callbacks=[backup]).history

    unbroken = xla_model()
    straight = fit(unbroken, tmp_path / "unbroken", 2)
    fit(xla_model(), tmp_path / "broken", 1)  # the process that was killed after epoch 1
    resumed = xla_model()
    assert ResumableBackup(tmp_path / "broken").initial_epoch == 1
    second = fit(resumed, tmp_path / "broken", 2)
    assert resumed.jit_compile is True
    assert second["loss"] == straight["loss"][1:], (second, straight)
    for a, b in zip(unbroken.weights + unbroken.optimizer.variables,
                    resumed.weights + resumed.optimizer.variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def tiny_config(tmp_path, **values):
    return TrainConfig(model="gim-fmnist-resnet", out_dir=str(tmp_path / "run"), **values)


@pytest.mark.parametrize("field, value, message", [
    ("mixed_precision", "float16", "--mixed_precision must be one of"),
    ("jit_compile", "yes", "--jit_compile must be one of ('auto', 'true', 'false')"),
    ("steps_per_execution", 0, "--steps_per_execution must be >= 1"),
])
def test_bad_gpu_flags_are_refused_naming_the_flag(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tiny_config(tmp_path, **{field: value}).resolved()


def test_xla_and_multi_step_calls_are_refused_under_tf_distribute(tmp_path):
    """Keras 3.15 fails with either under a strategy (a plain Dense model too), so the
    command is refused before anything is written; mixed precision is fine there."""
    for other in ({"jit_compile": "true"}, {"steps_per_execution": 2}):
        with pytest.raises(ValueError, match="--strategy=mirrored takes neither"):
            tiny_config(tmp_path, strategy="mirrored", **other).resolved()
    tiny_config(tmp_path, strategy="mirrored", mixed_precision="mixed_float16").resolved()
    assert not (tmp_path / "run").exists()


def test_gpu_flags_from_the_python_api_and_a_resume_with_another_value_is_refused(tmp_path):
    config = tiny_config(tmp_path, jit_compile=True, mixed_precision="mixed_bfloat16",
                         steps_per_execution=4).resolved()
    assert config.jit_compile == "true"  # a bool from Python, recorded as the flag's text
    run_dir = RunDirectory(config.out_dir)
    run_dir.prepare(dataclasses.asdict(config), defaults=dataclasses.asdict(TrainConfig()))
    recorded = run_dir.read_config()
    assert (recorded["jit_compile"], recorded["mixed_precision"],
            recorded["steps_per_execution"]) == ("true", "mixed_bfloat16", 4)
    run_dir.history_path.write_text("epoch,loss\n0,1.0\n")  # the run has trained an epoch
    for field, other in (("jit_compile", "false"), ("mixed_precision", ""),
                         ("steps_per_execution", 1)):
        changed = dataclasses.replace(config, **{field: other})
        with pytest.raises(ConfigMismatchError, match=field):
            run_dir.prepare(dataclasses.asdict(changed),
                            defaults=dataclasses.asdict(TrainConfig()))
    # a run directory made before these flags existed resumes with their defaults
    old = {k: v for k, v in recorded.items()
           if k not in ("jit_compile", "mixed_precision", "steps_per_execution")}
    old_dir = RunDirectory(tmp_path / "old")
    old_dir.prepare(old)
    default = dataclasses.replace(config, out_dir=str(old_dir.path), jit_compile="auto",
                                  mixed_precision="", steps_per_execution=1)
    old_dir.prepare(dataclasses.asdict(default), defaults=dataclasses.asdict(TrainConfig()))


def test_steps_per_execution_divides_an_epoch(tmp_path, capsys):
    """An execution that crossed an epoch's end would train on the next epoch's first
    batches (8 steps, 3 per execution: 9 steps per epoch) and break exact resumes."""
    from training.experiments.pretraining import steps_per_execution

    config = tiny_config(tmp_path, steps_per_execution=3)
    assert steps_per_execution(config, 9) == 3
    assert steps_per_execution(config, None) == 3  # a tf.data source: Keras stops at its end
    assert capsys.readouterr().err == ""
    assert steps_per_execution(config, 8) == 2
    assert "running 2 steps per execution" in capsys.readouterr().err
    assert steps_per_execution(dataclasses.replace(config, steps_per_execution=5), 7) == 1


@pytest.mark.slow  # a train.py subprocess over 2 logical CPUs
def test_mirrored_training_with_float16_loss_scaling(tmp_path):
    """The several-GPU recipe's flags (docs/gpu.md) over 2 logical CPUs: the loss scale
    optimizer's cross-replica apply with GreedyInfoMax's replica-mean gradients."""
    import json

    run(tmp_path / "run", "--epochs=1", "--strategy=mirrored", "--cpu_devices=2",
        "--mixed_precision=mixed_float16")
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["replicas"] == 2
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] < 3 * math.log(17)


# name: the flags of a killed run, compared with an uninterrupted run of its own. The
# suite's case holds the two flags that add state to resume (the loss scale's variables)
# or change what a batch end is (executions of several steps): a kill and resume exercise
# both. XLA adds no state: test_xla_train_steps_give_the_plain_steps_losses_and_weights
# shows its steps (negative sampling included) compute what the plain ones do, and each
# XLA process costs about 30 s of compiling here, so its resume cases are opt-in:
# GIM_ZOO_ALL_RESUME_CASES=1 adds XLA with every other flag, and one case per flag.
RESUME_CASES = {"mixed_float16-steps_per_execution": [
    "--mixed_precision=mixed_float16", "--steps_per_execution=4"]}
if os.environ.get("GIM_ZOO_ALL_RESUME_CASES") == "1":
    RESUME_CASES.update({
        "mixed_float16-xla-steps_per_execution": [
            "--mixed_precision=mixed_float16", "--jit_compile=true", "--steps_per_execution=4"],
        "xla-steps_per_execution": ["--jit_compile=true", "--steps_per_execution=4"],
        "mixed_float16": ["--mixed_precision=mixed_float16"],
        "mixed_bfloat16-xla": ["--mixed_precision=mixed_bfloat16", "--jit_compile=true"]})


def executions_per_epoch(flags):
    """Callbacks (and SelfKill's count) see one batch end per execution."""
    per_call = next((int(f.split("=")[1]) for f in flags
                     if f.startswith("--steps_per_execution=")), 1)
    return math.ceil(STEPS_PER_EPOCH / per_call)


@pytest.mark.slow
@pytest.mark.parametrize("case", RESUME_CASES)
def test_a_killed_run_resumes_bit_for_bit_with(case, tmp_path, tmp_path_factory):
    """As tests/test_faults.py, under each GPU flag: SIGKILL after a random execution
    past the first epoch, re-run the same command, compare every weight and optimizer
    array (the loss scale's too) and the final metrics exactly."""
    flags = [f"--epochs={EPOCHS}", *RESUME_CASES[case]]
    per_epoch = executions_per_epoch(flags)
    seed = random.SystemRandom().randrange(10**6)
    step = random.Random(seed).randrange(per_epoch + 1, EPOCHS * per_epoch)
    why = f"{case}: kill after execution {step} (random seed {seed})"
    reference = cached_run(tmp_path_factory, f"gpu-ready-{case}", *flags)
    run_dir = tmp_path / "killed"
    [(code, output)] = wait_all([start(run_dir, *flags, GIM_ZOO_SIGKILL_AT_STEP=step)])
    assert code == -signal.SIGKILL, f"{why}: exit status {code}\n{tail(output)}"
    assert ResumableBackup.completed_epochs(run_dir / "backup") == (step - 1) // per_epoch, why
    out = run(run_dir, *flags, "--verbose=2").stdout
    assert "Epoch 1/" not in out, why  # resumed, not restarted
    assert_same_run(run_dir, reference, why)


@pytest.mark.slow  # two JAX subprocesses, each compiling a GIM train step
def test_the_jax_gpu_benchmark_runs_here_under_jax_without_tensorflow(tmp_path):
    """benchmarks/jax_gpu_step.py at a toy size on this CPU: what a lent GPU machine (JAX,
    no TensorFlow) runs. Its children block TensorFlow imports, so passing here means
    nothing on that path needs TensorFlow."""
    import json
    import os
    import sys
    from pathlib import Path

    from tests import subprocs

    root = Path(__file__).resolve().parents[1]
    figures = tmp_path / "cells.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_backend_optimization_level=0"}  # compile faster
    out = subprocs.run([sys.executable, "benchmarks/jax_gpu_step.py", "--widths=4,4,8",
                        "--blocks=1,1,1", "--stem_width=8", "--batch_sizes=2", "--steps=1",
                        "--warmup=2", "--policies=float32,mixed_float16",
                        f"--json={figures}"], env=env, cwd=root)
    cells = json.loads(figures.read_text())
    assert set(cells) == {"float32 2", "mixed_float16 2"}, cells
    assert all("error" not in c and c["device"].startswith("cpu") for c in cells.values())
    assert all(np.isfinite(c["loss"]) and c["images_per_s"] > 0 for c in cells.values())
    assert cells["mixed_float16 2"]["optimizer"] == "LossScaleOptimizer"
    assert "| mixed_float16 | 2 |" in out.stdout

    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from jax_gpu_step import _NoTensorFlow
    finally:
        sys.path.remove(str(root / "benchmarks"))
    with pytest.raises(ImportError, match="tensorflow is blocked"):
        _NoTensorFlow().find_spec("tensorflow", None)


@pytest.mark.slow  # two TensorFlow subprocesses
def test_the_step_memory_benchmark_prints_a_row_per_batch_and_the_slope():
    """benchmarks/step_memory.py (docs/gpu.md's memory table) at a toy width."""
    import sys
    from pathlib import Path

    from tests import subprocs

    root = Path(__file__).resolve().parents[1]
    out = subprocs.run([sys.executable, "benchmarks/step_memory.py", "--configs=gim-m1",
                        "--batch_sizes=2,4", "--steps=1", "--warmup=1", "--widths=4,4,8",
                        "--blocks=1,1,1"], cwd=root).stdout
    rows = [line.split("|")[1:-1] for line in out.splitlines()
            if line.startswith("| GIM, module 1 only |")]
    assert [r[1].strip() for r in rows] == ["2", "4"], out
    for row in rows:
        peak, rest = float(row[2]), float(row[3])
        assert rest > 100 and peak >= rest, out  # MiB: TensorFlow alone is hundreds
    assert "| GIM, module 1 only: each image more (2 -> 4) |" in out, out

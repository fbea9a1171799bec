"""Faults: a training process (or one worker of a 2-worker cluster) SIGKILLed at a random
step, then the same command re-run, ends with the weights of an uninterrupted run.

Exact, not within a tolerance: backups are per epoch (a killed epoch is redone from its
start), and everything that epoch depends on is restored or recomputed identically: the
model and optimizer variables (the backup's weights file holds both), the InfoNCE
samplers' seed-generator states (stored in the same file), and the epoch's data order and
augmentation (a pure function of seed and epoch, not of how many epochs this process has
seen). CPU kernels are deterministic for identical inputs, so the redone epoch repeats the
lost one bit for bit. Set GIM_ZOO_FAULT_SEED to replay a particular kill step.
"""

import json
import os
import random
import signal
import time

import numpy as np
import pytest

from tests.subprocs import tail
from tests.training_procs import (STEPS_PER_EPOCH, cached_run, final_logs, kill_all,
                                  leftovers, run, run_cluster, start, start_cluster,
                                  wait_all, weights)
from gim_zoo.callbacks.backup import ResumableBackup

EPOCHS = 3


def seeds(*regressions):
    """Parametrize a test by kill-step seed: None (a random seed, or GIM_ZOO_FAULT_SEED)
    and, as fixed cases, seeds with which it once failed."""
    return pytest.mark.parametrize("seed", [None, *regressions],
                                   ids=["random", *(f"seed{s}" for s in regressions)])


def kill_step(seed=None):
    """A step after the first epoch's backup and before the last step, drawn from `seed`
    (default: GIM_ZOO_FAULT_SEED, or a random seed)."""
    if seed is None:
        seed = int(os.environ.get("GIM_ZOO_FAULT_SEED",
                                  random.SystemRandom().randrange(10**6)))
    step = random.Random(seed).randrange(STEPS_PER_EPOCH + 1, EPOCHS * STEPS_PER_EPOCH)
    why = f"kill step {step} (GIM_ZOO_FAULT_SEED={seed})"
    print(why)  # shown with the captured output of a failing test
    return step, why


def assert_same_run(resumed, reference, why):
    a, b = weights(resumed / "model.weights.h5"), weights(reference / "model.weights.h5")
    assert a.keys() == b.keys(), why
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"{why}: {len(different)} arrays differ, e.g. {different[:3]}"
    assert final_logs(resumed) == final_logs(reference), why
    metrics = json.loads((resumed / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["epochs_completed"] == EPOCHS, why
    assert leftovers(resumed) == [], why


# 867636 (kill step 10): issue 17, compared with a cached reference run that a timeout
# had killed.
@pytest.mark.slow
@seeds(867636)
def test_sigkill_at_a_random_step_resumes_to_the_uninterrupted_weights(seed, tmp_path,
                                                                         tmp_path_factory):
    step, why = kill_step(seed)
    reference = cached_run(tmp_path_factory, "single", f"--epochs={EPOCHS}")
    run_dir = tmp_path / "killed"
    [(code, output)] = wait_all([start(run_dir, f"--epochs={EPOCHS}",
                                       GIM_ZOO_SIGKILL_AT_STEP=step)])
    assert code == -signal.SIGKILL, f"{why}: exit status {code}\n{tail(output)}"
    # Killed mid-run: the backup holds the epochs completed before the kill, nothing more,
    # and nothing half-written was left behind.
    assert ResumableBackup.completed_epochs(run_dir / "backup") == \
        (step - 1) // STEPS_PER_EPOCH, why
    assert not (run_dir / "metrics.json").exists(), why
    assert leftovers(run_dir) == [], why

    out = run(run_dir, f"--epochs={EPOCHS}", "--verbose=2").stdout
    assert "Epoch 1/" not in out, why  # resumed, not restarted
    assert_same_run(run_dir, reference, why)


@pytest.mark.slow
@seeds()
def test_a_module_at_a_time_job_sigkilled_resumes_from_its_small_backup(seed, tmp_path,
                                                                         tmp_path_factory):
    """Module 2 trained on module 1's weights (--init_from), killed, re-run: its backup
    holds module 2's variables and moments only, and the resumed job ends with the
    weights of an uninterrupted one (module 1 comes back from --init_from)."""
    import h5py

    step, why = kill_step(seed)
    m1 = cached_run(tmp_path_factory, "module-1", "--epochs=1", "--train_module=1")
    module2 = ["--train_module=2", f"--init_from={m1}", f"--epochs={EPOCHS}"]
    reference = cached_run(tmp_path_factory, "module-2", *module2)
    run_dir = tmp_path / "killed"
    [(code, output)] = wait_all([start(run_dir, *module2, GIM_ZOO_SIGKILL_AT_STEP=step)])
    assert code == -signal.SIGKILL, f"{why}: exit status {code}\n{tail(output)}"
    with h5py.File(run_dir / "backup" / ResumableBackup.WEIGHTS, "r") as f:
        assert "trained_variables" in f, why  # the small format, not the whole model
    run(run_dir, *module2)
    assert_same_run(run_dir, reference, why)


@pytest.mark.slow
@seeds()
def test_a_worker_sigkilled_at_a_random_step_resumes_with_its_cluster(seed, tmp_path,
                                                                       tmp_path_factory):
    """Worker 1 of 2 kills itself; the chief is then stopped too (synchronous training
    cannot go on without a peer: a scheduler restarts the whole cluster, which is what
    ResumableBackup is for) and both are restarted with the same command."""
    step, why = kill_step(seed)
    reference = cached_run(tmp_path_factory, "multi-worker", f"--epochs={EPOCHS}",
                           cluster=True)
    run_dir = tmp_path / "killed"
    procs = start_cluster(run_dir, f"--epochs={EPOCHS}", kill_at={1: step},
                          tmpdir=tmp_path / "tmp")
    try:
        [(code, output)] = wait_all([procs[1]])  # the worker that kills itself
        assert code == -signal.SIGKILL, f"{why}: exit status {code}\n{tail(output)}"
        time.sleep(1)  # the chief is now blocked in a collective with the dead worker
        assert procs[0].poll() in (None, 1), why
    finally:
        kill_all(procs)
    assert ResumableBackup.completed_epochs(run_dir / "backup") == \
        (step - 1) // STEPS_PER_EPOCH, why
    assert leftovers(run_dir) == [], why

    run_cluster(run_dir, f"--epochs={EPOCHS}", tmpdir=tmp_path / "tmp")
    assert_same_run(run_dir, reference, why)
    assert list((tmp_path / "tmp").glob("gim-zoo-worker-*")) == [], "scratch files left"


def test_backup_carries_optimizer_and_negative_sampler_state(tmp_path, tiny_encoder):
    """What exact resumption rests on, in-process: the backup restores the optimizer's
    variables (Keras's weights file has them) and the InfoNCE samplers' seed-generator
    states (Keras's weights file has not: ResumableBackup stores them beside the weights
    in the same file), and the epoch count fit() resumes at comes from that same file."""
    import keras

    from gim_zoo.models.gim import GreedyInfoMax
    from gim_zoo.callbacks.backup import seed_states

    from tests.conftest import TINY_ENCODER

    images = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    model = GreedyInfoMax(tiny_encoder, seed=0)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(images, batch_size=4, epochs=2, verbose=0,
              callbacks=[ResumableBackup(tmp_path / "backup")])
    drawn = [keras.ops.convert_to_numpy(v) for v in seed_states(model)]
    assert len(drawn) == 3 and all(state[1] > 0 for state in drawn)  # negatives were drawn

    from gim_zoo.registry import get

    fresh = GreedyInfoMax(get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER), seed=0)
    fresh.compile(keras.optimizers.Adam(1e-3))
    backup = ResumableBackup(tmp_path / "backup")
    backup.set_model(fresh)
    backup.on_train_begin()
    assert backup.initial_epoch == 2
    assert ResumableBackup.completed_epochs(tmp_path / "backup") == 2
    for a, b in zip(drawn, seed_states(fresh)):
        assert np.array_equal(a, keras.ops.convert_to_numpy(b))
    assert int(fresh.optimizer.iterations) == 4
    for a, b in zip(model.optimizer.variables, fresh.optimizer.variables):
        assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    assert leftovers(tmp_path / "backup") == []

"""The callbacks inside fit under the active backend: RIFLE, lottery masks with rewind,
symmetry teleportation, and module-at-a-time backups (ResumableBackup(variables=...))."""

import keras
import numpy as np
import pytest

from gim_zoo.callbacks import (RIFLE, BackupError, PruneWithRewind, PruningMasks,
                               ResumableBackup, SymmetryTeleport)

L = keras.layers


def to_numpy(x):
    if isinstance(x, keras.Variable):
        x = x.value
    return np.asarray(keras.ops.convert_to_numpy(x))


def mlp(layers, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((layers[0],))] + layers[1:])


class Snapshots(keras.callbacks.Callback):
    """All weights at each epoch end (placed before or after RIFLE in the callback list)."""

    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append({v.path: to_numpy(v) for v in self.model.weights})


def test_rifle_reinitialises_only_the_head_at_the_planned_epochs():
    model = mlp([6, L.Dense(16, activation="relu", name="backbone1"),
                 L.Dense(16, activation="relu", name="backbone2"),
                 L.Dense(3, activation="softmax", name="head")])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    epochs = 8
    schedule = keras.optimizers.schedules.CosineDecay(1e-2, decay_steps=epochs * 4)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
    before, after = Snapshots(), Snapshots()
    rifle = RIFLE("head", epochs, times=3, reset_optimizer_slots=True, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=epochs, verbose=0,
                        callbacks=[before, rifle, after]).history
    assert [{k: r[k] for k in ("after_epoch", "optimizer_step")} for r in rifle.log] == [
        {"after_epoch": 2, "optimizer_step": 8}, {"after_epoch": 4, "optimizer_step": 16},
        {"after_epoch": 6, "optimizer_step": 24}]
    for epoch in range(epochs):  # what RIFLE itself changed at the end of each epoch
        for path, value in before.weights[epoch].items():
            moved = not np.array_equal(value, after.weights[epoch][path])
            assert moved == ("/head/" in f"/{path}" and epoch + 1 in (2, 4, 6)), (epoch, path)
    assert history["rifle_reinits"] == [0, 1, 1, 2, 2, 3, 3, 3]
    head = model.get_layer("head").kernel.path
    assert not np.array_equal(after.weights[5][head], after.weights[7][head])  # trains on
    assert int(to_numpy(model.optimizer.iterations)) == 32


def test_lottery_masks_hold_across_fits_and_rewind_is_exact():
    """Masked weights stay exactly zero through two fits of one compiled model (new masks
    between them: under JAX the compiled step must see them), then a prune-and-rewind
    restores the start values and a fresh optimizer."""
    model = mlp([20, L.Dense(30, activation="relu"), L.Dense(25, activation="relu"),
                 L.Dense(4, activation="softmax")])
    masks = PruningMasks(model)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 20)).astype("float32")
    y = x[:, :4].argmax(-1).astype("int64")

    def violations():
        """(masked weights that are not zero, unmasked weights that are exactly zero)"""
        bad = alive_zero = 0
        for path, _, kernel in masks.kernels:
            mask, w = to_numpy(masks.masks[path]), to_numpy(kernel)
            bad += int(np.count_nonzero(w[mask == 0]))
            alive_zero += int(np.sum(w[mask == 1] == 0))
        return bad, alive_zero

    masks.assign({p: (rng.random(m.shape) > 0.5).astype("float32")
                  for p, m in masks.numpy().items()})
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert violations() == (0, 0)
    masks.assign(masks.magnitude_prune())  # round 2, same compiled model
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    assert violations() == (0, 0)

    rewind = PruneWithRewind(masks, rewind_step=0)
    start = {}

    class Record(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            start.update({v.path: to_numpy(v).copy() for v in self.model.weights})

    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[rewind, Record()])
    remaining = masks.remaining()
    rewind.prune_and_rewind()
    assert masks.remaining() < remaining
    for v in model.weights:
        if v.path.endswith("mask"):
            continue
        want = start[v.path]
        if v.path in masks.masks:
            want = want * to_numpy(masks.masks[v.path])
        np.testing.assert_array_equal(to_numpy(v), want, err_msg=v.path)
    for path, _, kernel in masks.kernels:
        np.testing.assert_array_equal(to_numpy(kernel),
                                      start[path] * to_numpy(masks.masks[path]))
    assert all(not np.any(to_numpy(v)) for v in model.optimizer.variables
               if "learning_rate" not in v.path)


def test_teleport_keeps_the_loss_and_the_function_and_raises_the_gradient_norm():
    """SymmetryTeleport inside fit, then one direct teleport. (A GreedyInfoMax teleport is
    in tests/test_teleport.py only: JAX runs the orbit search eagerly, ~20 s of first-call
    compiles on 2 cores.)"""
    from gim_zoo.teleport import Teleporter

    model = mlp([8, L.Dense(16, activation="relu", name="d1"), L.Dense(16, name="d2"),
                 L.LeakyReLU(name="act2"), L.Dense(3, name="out")])
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")
    teleport = SymmetryTeleport((x, y), at_steps=(0, 3), steps=4, lr=0.2, batch_size=16,
                                verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0, callbacks=[teleport]).history
    assert [r["step"] for r in teleport.log] == [0, 3]
    assert history["teleports"] == [2.0, 2.0] and np.isfinite(history["loss"]).all()
    teleport.teleport_now()  # zeroes the teleported kernels' Adam moments
    slots = {s.name: to_numpy(s) for s in model.optimizer.variables}
    name = model.get_layer("d1").kernel.path.replace("/", "_")
    assert not slots[f"{name}_momentum"].any() and not slots[f"{name}_velocity"].any()

    other = rng.normal(size=(50, 8)).astype("float32")
    outputs, weights = to_numpy(model(other)), [to_numpy(v) for v in model.trainable_variables]
    direct = Teleporter(model).teleport((x[:12], y[:12]), steps=4, lr=0.3)
    for record in teleport.log + [direct]:
        assert record["applied"]
        assert abs(record["loss_after"] - record["loss_before"]) <= 1e-5 * record["loss_before"]
        assert record["after"] >= record["before"]
    assert direct["after"] > 1.05 * direct["before"]
    assert any(not np.allclose(a, to_numpy(b)) for a, b in zip(weights, model.trainable_variables))
    assert np.max(np.abs(to_numpy(model(other)) - outputs)) < 1e-4


def _module2_model(seed=0, optimizer_over_every_variable=False):
    """A tiny GreedyInfoMax(train_module=2), its weights drawn from `seed` as train.py
    draws them, compiled with Adam."""
    from gim_zoo.models.gim import GreedyInfoMax
    from gim_zoo.registry import get

    from tests.conftest import TINY_ENCODER

    keras.utils.set_random_seed(seed)
    model = GreedyInfoMax(get("gim-fmnist-resnet").build_encoder(**TINY_ENCODER),
                          train_module=2, seed=0)
    optimizer = keras.optimizers.Adam(1e-3)
    if optimizer_over_every_variable:  # what gim_zoo did before compile() built it
        optimizer.build(model.trainable_variables)
    model.compile(optimizer)
    return model


def test_module_at_a_time_backup_holds_module_k_only_and_resumes_exactly(tmp_path):
    """With train_module=k the optimizer covers module k alone, and the backup holds
    module k's variables, the optimizer's and the seed states: a small file, from which a
    model rebuilt the same way (seed, earlier modules) continues bit for bit."""
    import shutil

    import h5py

    def values(variables):
        return [to_numpy(v) for v in variables]

    images = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    model = _module2_model()
    trained = model.trained_variables
    assert len(model.optimizer.variables) == 2 + 2 * len(trained)  # iterations, lr, m, v
    model.fit(images, batch_size=4, epochs=1, verbose=0, shuffle=False,
              callbacks=[ResumableBackup(tmp_path / "backup", variables=trained)])
    shutil.copytree(tmp_path / "backup", tmp_path / "after-epoch-1")
    model.fit(images, batch_size=4, epochs=2, initial_epoch=1, verbose=0, shuffle=False)

    backup_file = tmp_path / "after-epoch-1" / ResumableBackup.WEIGHTS
    with h5py.File(backup_file, "r") as f:
        saved = sum(len(group) for group in f.values())
    assert saved == len(trained) + len(model.optimizer.variables)
    model.save_weights(tmp_path / "whole.weights.h5")
    assert backup_file.stat().st_size < (tmp_path / "whole.weights.h5").stat().st_size / 2

    resumed = _module2_model()
    backup = ResumableBackup(tmp_path / "after-epoch-1", variables=resumed.trained_variables)
    resumed.fit(images, batch_size=4, epochs=2, initial_epoch=backup.initial_epoch,
                verbose=0, shuffle=False, callbacks=[backup])
    for name, a, b in [("weights", model.weights, resumed.weights),
                       ("optimizer", model.optimizer.variables, resumed.optimizer.variables)]:
        assert len(a) == len(b)
        different = [v.path for v, x, y in zip(a, values(a), values(b))
                     if not np.array_equal(x, y)]
        assert not different, f"{name} differ after resuming: {different[:3]}"

    # Module 1 (and the heads) drawn from another seed: not the model module 2 was
    # trained beside, so the backup is refused rather than resumed into a mix.
    other = _module2_model(seed=1)
    refused = ResumableBackup(tmp_path / "after-epoch-1", variables=other.trained_variables)
    refused.set_model(other)
    with pytest.raises(BackupError, match="other weights differ"):
        refused.on_train_begin()
    # And a whole-model restore cannot read it.
    whole = ResumableBackup(tmp_path / "after-epoch-1")
    whole.set_model(_module2_model())
    with pytest.raises(BackupError, match="only some of the model's variables"):
        whole.on_train_begin()


def test_whole_model_backup_with_another_optimizer_layout_is_refused(tmp_path):
    """A module-at-a-time backup written when the optimizer covered every module (older
    gim_zoo) does not fit today's optimizer: refused with an explanation, where Keras
    would skip the optimizer's state with a warning and the run would restart Adam."""
    images = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    old = _module2_model(optimizer_over_every_variable=True)
    old.fit(images, batch_size=4, epochs=1, verbose=0,
            callbacks=[ResumableBackup(tmp_path / "backup")])
    backup = ResumableBackup(tmp_path / "backup")
    backup.set_model(_module2_model())
    with pytest.raises(BackupError, match="optimizer variables"):
        backup.on_train_begin()


def test_head_rate_sgd_steps_the_head_at_its_cyclic_rate_under_the_backend():
    from gim_zoo.callbacks import CyclicCosineDecay, HeadRateSGD

    def model_and_data():
        keras.utils.set_random_seed(0)  # before the layers: their initializers draw seeds
        model = mlp([6, L.Dense(8, activation="relu", name="body"),
                     L.Dense(3, activation="softmax", name="head")])
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 6)).astype("float32")
        return model, x, (x[:, 0] > 0).astype("int32")

    schedule = keras.optimizers.schedules.CosineDecay(0.05, 8)
    finals = []
    for head_rate in (None, schedule, CyclicCosineDecay(0.05, [4], 8)):
        model, x, y = model_and_data()
        head = {} if head_rate is None else {
            "head_variables": model.get_layer("head").weights, "head_learning_rate": head_rate}
        model.compile(HeadRateSGD(schedule, momentum=0.9, l2=1e-4, **head),
                      "sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        finals.append([to_numpy(w) for w in model.weights])
    # the head at the run's own schedule is plain HeadRateSGD; a cyclic head rate is not
    for a, b in zip(finals[0], finals[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert not np.allclose(finals[0][-2], finals[2][-2])  # head kernel

    body = keras.Variable(np.ones(2, "float32"))
    head = keras.Variable(np.ones(2, "float32"))
    optimizer = HeadRateSGD(0.1, momentum=0.0, l2=0.5, head_variables=[head],
                            head_learning_rate=0.01)
    optimizer.apply([keras.ops.ones(2), keras.ops.ones(2)], [body, head])
    np.testing.assert_allclose(to_numpy(body), 1 - 0.1 * 1.5, rtol=1e-6)
    np.testing.assert_allclose(to_numpy(head), 1 - 0.01 * 1.5, rtol=1e-6)

"""A per-epoch backup that a re-run resumes from, bit for bit, on public Keras API only.

    from gim_zoo.callbacks import ResumableBackup

    backup = ResumableBackup("runs/my-run/backup")
    model.fit(x, epochs=10, initial_epoch=backup.initial_epoch, callbacks=[backup])

Killed at any point, the same two lines resume after the last completed epoch: the
weights, the optimizer's variables and the seed generators' states come back (in
on_train_begin) and fit() starts at the epoch after them (initial_epoch). A fit() that
starts anywhere else is refused rather than silently redoing or skipping epochs.

A module-at-a-time run (GreedyInfoMax(train_module=k)) changes only module k: given
`variables=model.trained_variables`, the backup holds those, the optimizer's variables and
the seed states (gim4dir-fmnist-resnet-deep: 1.2 / 4.6 / 18.5 MB for modules 1 / 2 / 3,
where the whole model with Adam moments for every module was 24 MB), small enough to
carry a half-trained job to another machine. Every other weight is left out and
fingerprinted: a resume must rebuild it identically (same seed, same --init_from), or
is refused.

Why not keras.callbacks.BackupAndRestore: it writes in place (a kill mid-write leaves a
half-written backup), backs up non-finite weights, leaves seed-generator states out, and
gim_zoo would have to override its private members to change any of that.
"""

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np

from gim_zoo.files import atomic_path, atomic_write_json, sha256_of

# Attributes of the backup weights file: the epoch count and the seed generators' states
# live in the same file as the weights, so one rename commits all three together.
_EPOCH_ATTR = "gim_zoo_completed_epochs"
_SEEDS_ATTR = "gim_zoo_seed_generators"
# The run's settings (ResumableBackup(settings=...)), JSON: a run directory whose
# config.json is lost is rebuilt from them, never from the flags of the command resuming it.
_SETTINGS_ATTR = "gim_zoo_run_settings"
# A backup of chosen variables only (ResumableBackup(variables=...)): their values, the
# optimizer's, and the sha256 of every weight left out.
_VARIABLES_GROUP = "trained_variables"
_OPTIMIZER_GROUP = "optimizer_variables"
_FIXED_ATTR = "gim_zoo_fixed_weights_sha256"


class BackupError(ValueError):
    """A run's backup is missing, damaged or disagrees with its history."""


def seed_states(model):
    """The state variables of every keras.random.SeedGenerator of `model` (e.g. the
    InfoNCE negative samplers), in a fixed order. Keras's weights files leave them out;
    `model.variables` is `model.weights` plus these."""
    weights = {id(v) for v in model.weights}
    found, seen = [], set()
    for variable in model.variables:
        if id(variable) not in weights and id(variable) not in seen:
            seen.add(id(variable))
            found.append(variable)
    return found


def weights_fingerprint(variables):
    """sha256 over the values, shapes and dtypes of `variables`, in order (not their
    names: Keras numbers auto-named layers per process)."""
    digest = hashlib.sha256()
    for variable in variables:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(variable))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _write_variables(path, model, variables):
    """Write `variables`' and the optimizer's values to a new h5 file at `path`, with the
    fingerprint of the model's other weights (see ResumableBackup(variables=...))."""
    import h5py

    chosen = {id(v) for v in variables}
    fixed = weights_fingerprint([w for w in model.weights if id(w) not in chosen])
    optimizer = model.optimizer.variables if model.optimizer is not None else []
    groups = {_VARIABLES_GROUP: variables, _OPTIMIZER_GROUP: optimizer}
    values = {name: [keras.ops.convert_to_numpy(v) for v in group]
              for name, group in groups.items()}
    with h5py.File(path, "w") as f:
        f.attrs[_FIXED_ATTR] = fixed
        for name, arrays in values.items():
            group = f.create_group(name)
            group.attrs["paths"] = json.dumps([v.path for v in groups[name]])
            for i, array in enumerate(arrays):
                group.create_dataset(str(i), data=array)


def save_weights_as_worker(model, path, chief=True, attrs=None, checksum=None,
                           variables=None):
    """atomic_save_weights on the chief; elsewhere the same save into a scratch directory
    that is deleted at once.

    Under MultiWorkerMirroredStrategy reading some variables to save them is a collective
    (a broadcast), so every worker must save; only the chief's copy is kept (TF's
    multi-worker checkpointing does the same). attrs: root attributes added to the file
    before it is renamed into place. checksum: a JSON file that records the new file's
    sha256, and that of the file it replaces, written before the rename (see
    ResumableBackup.verified_epochs). variables: write only these, the optimizer's
    variables and a fingerprint of the rest (ResumableBackup(variables=...))."""
    scratch = None if chief else Path(tempfile.mkdtemp(prefix="gim-zoo-worker-"))
    path = Path(path) if chief else scratch / Path(path).name

    def record_checksum(tmp):
        # Before the rename, so the weights file always matches one of the two.
        atomic_write_json(checksum, {
            "sha256": sha256_of(tmp),
            "previous_sha256": sha256_of(path) if path.exists() else None,
            "epoch": (attrs or {}).get(_EPOCH_ATTR)})

    try:
        with atomic_path(path, record_checksum if checksum and chief else None) as tmp:
            if variables is None:
                model.save_weights(tmp)
            else:
                _write_variables(tmp, model, variables)
            if attrs:
                import h5py

                with h5py.File(tmp, "a") as f:
                    for key, value in attrs.items():
                        f.attrs[key] = value
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def all_finite(logs):
    return all(math.isfinite(float(v)) for v in (logs or {}).values()
               if isinstance(v, (int, float)) or hasattr(v, "__float__"))


class ResumableBackup(keras.callbacks.Callback):
    """Backs up the model after every finite epoch, atomically; restores it on_train_begin.

    The backup (backup_dir/latest.weights.h5, written with model.save_weights: the model
    and, once compiled, the optimizer variables) also carries the number of completed
    epochs and the states of the model's seed generators, so a resumed run draws the same
    InfoNCE negatives as an uninterrupted one, and the epoch count can never disagree
    with the weights (one `os.replace` commits all three). A sha256 sidecar, written
    before that rename, lets verified_epochs tell a damaged backup from an interrupted
    commit. training_metadata.json is written after it, for people; the weights file's
    count wins. The backup is kept after training, so re-running a finished command is a
    no-op and asking for more epochs continues from the last one.

    write=False (non-chief multi-worker processes) restores from the chief's backup and
    keeps nothing it saves (every worker must save: see save_weights_as_worker).

    variables: the only weights training changes (GreedyInfoMax.trained_variables with
    `train_module=k`, its optimizer built over them by compile). The backup then holds
    these, the optimizer's variables and the seed states; restoring checks that every
    other weight of the model has the values it had when the backup was written.

    settings: a JSON-able dict of what the run was asked to do (a run directory's
    config.json), committed with every backup: `recorded_settings` reads it back.
    """

    WEIGHTS = "latest.weights.h5"
    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, write=True, variables=None, recovery=None, settings=None):
        super().__init__()
        self.backup_dir = Path(backup_dir)
        self.write = write
        self.variables = None if variables is None else list(variables)
        self.settings = None if settings is None else json.dumps(settings, sort_keys=True)
        # What a refused backup's error tells the user to do (e.g. a run directory's).
        self.recovery = recovery or f"Delete {self.backup_dir} to start over."
        self._resumed_at = None  # epochs restored by on_train_begin, until fit's first epoch

    @property
    def weights_path(self):
        return self.backup_dir / self.WEIGHTS

    @property
    def initial_epoch(self):
        """The epoch to start fit() at (fit(initial_epoch=...)): the completed epochs of a
        checked backup, 0 without one; BackupError for a damaged one."""
        return self.verified_epochs(self.backup_dir)

    @staticmethod
    def checksum_path(backup_dir):
        return Path(backup_dir) / f"{ResumableBackup.WEIGHTS}.sha256"

    @staticmethod
    def verified_epochs(backup_dir, recovery=None):
        """completed_epochs after checking the backup is whole: the weights file's sha256
        is the one recorded beside it (or the one it was replacing, when a process died
        between the two), and a backup that was committed has not since gone missing.
        BackupError otherwise, saying what is wrong and how to recover."""
        backup_dir = Path(backup_dir)
        weights = backup_dir / ResumableBackup.WEIGHTS
        sidecar = ResumableBackup.checksum_path(backup_dir)
        recovery = recovery or f"Delete {backup_dir} to start over."
        recorded = None
        if sidecar.exists():
            try:
                recorded = json.loads(sidecar.read_text())
            except ValueError:  # UnicodeDecodeError too: binary content
                recorded = None
            if not isinstance(recorded, dict):
                raise BackupError(f"{sidecar} is damaged (not a JSON object). {recovery}")
        metadata = backup_dir / ResumableBackup.METADATA
        if not weights.exists():
            if metadata.exists() or (recorded and recorded.get("previous_sha256")):
                raise BackupError(
                    f"{weights} is missing, but {backup_dir} records a completed backup: "
                    f"resuming would restart from random weights. {recovery}")
            return 0  # no backup yet (or the first one was never committed)
        if recorded is None:
            raise BackupError(
                f"{weights} has no checksum ({sidecar.name} is missing: the backup is "
                f"damaged, or was written by an older gim_zoo). {recovery}")
        got = sha256_of(weights)
        if got not in (recorded.get("sha256"), recorded.get("previous_sha256")):
            raise BackupError(
                f"{weights} failed its integrity check: sha256 {got[:12]}... but "
                f"{sidecar.name} records {str(recorded.get('sha256'))[:12]}... The file is "
                f"truncated or corrupted. {recovery}")
        try:
            return ResumableBackup.completed_epochs(backup_dir)
        except (OSError, ValueError, KeyError) as e:
            raise BackupError(f"{weights} cannot be read ({e}). {recovery}") from e

    @staticmethod
    def recorded_settings(backup_dir):
        """The run settings the backup in `backup_dir` records (ResumableBackup(settings=)),
        or None: no backup, one written without settings, or one that cannot be read
        (verified_epochs says why)."""
        weights = Path(backup_dir) / ResumableBackup.WEIGHTS
        try:
            import h5py

            with h5py.File(weights, "r") as f:
                saved = f.attrs.get(_SETTINGS_ATTR)
            settings = None if saved is None else json.loads(saved)
        except (OSError, ValueError):
            return None
        return settings if isinstance(settings, dict) else None

    @staticmethod
    def completed_epochs(backup_dir):
        """Epochs a run in `backup_dir` has completed (0 without a backup), unchecked:
        known before fit() so the data pipeline can start there."""
        weights = Path(backup_dir) / ResumableBackup.WEIGHTS
        if weights.exists():
            import h5py

            with h5py.File(weights, "r") as f:
                if _EPOCH_ATTR in f.attrs:
                    return int(f.attrs[_EPOCH_ATTR])
        metadata = Path(backup_dir) / ResumableBackup.METADATA
        if metadata.exists():
            return int(json.loads(metadata.read_text())["epoch"])
        return 0

    def on_train_begin(self, logs=None):
        self._check_variables()
        self._resumed_at = self.restore()
        if self.write:  # before any epoch: a run with epochs and no backup/ lost it
            self.backup_dir.mkdir(parents=True, exist_ok=True)

    def _check_variables(self):
        """Refuse `variables` that are not the model's: the backup would hold, and a resume
        restore, another model's weights."""
        if self.variables is not None:
            own = {id(v) for v in self.model.variables}
            if not all(id(v) in own for v in self.variables):
                raise ValueError(f"ResumableBackup's variables are not all variables of "
                                 f"{self.model.name!r}, the model being fit")

    def on_epoch_begin(self, epoch, logs=None):
        resumed_at, self._resumed_at = self._resumed_at, None
        if resumed_at and epoch != resumed_at:
            raise ValueError(
                f"{self.weights_path} holds {resumed_at} completed epochs but fit() starts "
                f"at epoch {epoch}: pass fit(initial_epoch=backup.initial_epoch) so the "
                "run continues where its backup ends")

    def on_epoch_end(self, epoch, logs=None):
        if all_finite(logs):  # a non-finite epoch keeps the last good backup
            self.save(epoch + 1)

    def restore(self):
        """Load the backup into the model (weights, optimizer, seed generators) and return
        its completed epochs; 0, and nothing loaded, without a backup."""
        # never resume from a damaged backup
        epochs = self.verified_epochs(self.backup_dir, self.recovery)
        if not self.weights_path.exists():
            return epochs
        model = self.model
        if not model.built:
            raise ValueError(f"{type(model).__name__} must be built (called on a batch) "
                             f"before it can be restored from {self.weights_path}")
        if model.optimizer is not None and not model.optimizer.built:
            # The optimizer's variables exist only once it is built: over the variables
            # it trains, as the model's own first train step builds it.
            model.optimizer.build(self.variables if self.variables is not None
                                  else model.trainable_variables)
        import h5py

        with h5py.File(self.weights_path, "r") as f:
            whole_model = _VARIABLES_GROUP not in f
            if whole_model:
                self._check_optimizer_size(f)
            else:
                self._restore_variables(f)
            saved = f.attrs.get(_SEEDS_ATTR)
        if whole_model:
            model.load_weights(self.weights_path)
        if saved is not None:
            variables, states = seed_states(model), json.loads(saved)
            if len(states) != len(variables):
                raise ValueError(f"{self.weights_path} holds {len(states)} seed generator "
                                 f"states, the model has {len(variables)}")
            for variable, state in zip(variables, states):
                variable.assign(np.asarray(state, dtype=variable.dtype))
        return epochs

    def _check_optimizer_size(self, f):
        """A whole-model backup whose optimizer state does not fit the model's optimizer
        is refused: Keras would skip loading it with a warning, and the resumed run would
        restart Adam's moments silently (e.g. a module-at-a-time backup written when the
        optimizer covered every module)."""
        saved = len(f["optimizer/vars"]) if "optimizer/vars" in f else None
        optimizer = self.model.optimizer
        if saved is not None and optimizer is not None and saved != len(optimizer.variables):
            raise BackupError(
                f"{self.weights_path} holds {saved} optimizer variables, the model's "
                f"optimizer has {len(optimizer.variables)} (the backup was written by "
                f"another gim_zoo version or configuration). {self.recovery}")

    def _restore_variables(self, f):
        """Restore a backup of chosen variables (see `variables`), after checking that it
        fits this model: the same variables and optimizer shapes, and every other weight
        the same as when the backup was written."""
        if self.variables is None:
            raise BackupError(f"{self.weights_path} holds only some of the model's variables: "
                              "restore it with ResumableBackup(variables=...) (e.g. "
                              "GreedyInfoMax.trained_variables)")
        model = self.model
        groups = {_VARIABLES_GROUP: self.variables,
                  _OPTIMIZER_GROUP: model.optimizer.variables if model.optimizer else []}
        for name, targets in groups.items():
            saved = [f[name][str(i)] for i in range(len(f[name]))]
            shapes = [tuple(d.shape) for d in saved]
            if shapes != [tuple(v.shape) for v in targets]:
                raise BackupError(
                    f"{self.weights_path} does not fit this model: its {len(saved)} "
                    f"{name.replace('_', ' ')} have shapes {shapes[:4]}..., the model's "
                    f"{len(targets)} have {[tuple(v.shape) for v in targets][:4]}... "
                    "(another configuration?)")
        chosen = {id(v) for v in self.variables}
        if weights_fingerprint([w for w in model.weights if id(w) not in chosen]) != \
                f.attrs[_FIXED_ATTR]:
            raise BackupError(
                f"{self.weights_path} holds only the trained variables, and the model's "
                "other weights differ from those it was trained beside: rebuild the model "
                "as the run did (the same seed, the same --init_from weights). "
                f"{self.recovery}")
        for name, targets in groups.items():
            for i, variable in enumerate(targets):
                variable.assign(f[name][str(i)][()])

    def save(self, completed_epochs):
        """Back up the model as having completed `completed_epochs` epochs."""
        seeds = [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)]
        attrs = {_EPOCH_ATTR: int(completed_epochs), _SEEDS_ATTR: json.dumps(seeds)}
        if self.settings is not None:
            attrs[_SETTINGS_ATTR] = self.settings
        save_weights_as_worker(self.model, self.weights_path, chief=self.write,
                               attrs=attrs,
                               checksum=self.checksum_path(self.backup_dir),
                               variables=self.variables)
        if self.write:
            atomic_write_json(self.backup_dir / self.METADATA,
                              {"batch": 0, "epoch": int(completed_epochs)})

"""Files that are never half-written: every writer in gim_zoo goes through `atomic_path`
(or, for folders, `atomic_dir`).

    with atomic_path("out/metrics.json") as tmp:
        tmp.write_text(...)          # or model.save_weights(tmp), plt.savefig(tmp), ...

The content is written to a temporary name in the destination's own folder (so the final
`os.replace` is atomic), and renamed over the destination only when the block succeeds; on
any error the temporary file is removed and an OSError is re-raised naming the path.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

# Temporary names carry the writer's pid (.tmp-PID-name), so what a killed process left
# can be told from a write in progress: see remove_orphaned_temporaries.
_TEMPORARY = re.compile(r"^\.tmp-(\d+)-")


class OutputExistsError(FileExistsError):
    """An output path holds something a writer will not replace: a user's file or folder
    (anything gim_zoo cannot prove it wrote), a link, or its own output without an
    explicit overwrite."""


class DamagedFileError(ValueError):
    """A file gim_zoo wrote cannot be parsed any more (its message names it and says
    what recovers it)."""


def read_json_object(path, recover="restore it from a copy"):
    """The JSON object (dict) in `path`. DamagedFileError naming the file and `recover`
    for anything else (not JSON, binary, another JSON value); OSErrors name the path."""
    try:
        value = json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        value = None
    except json.JSONDecodeError as e:
        raise DamagedFileError(f"{path} is not valid JSON ({e.msg}: line {e.lineno} column "
                               f"{e.colno}): {recover}") from None
    except FileNotFoundError:
        raise
    except OSError as e:
        raise os_error_naming(e, path) from e
    if not isinstance(value, dict):
        raise DamagedFileError(f"{path} is not a JSON object (damaged, or not the file "
                               f"gim_zoo wrote): {recover}")
    return value


def describe_contents(folder, limit=4):
    """'a, b, c and 2 more': what a folder holds, for refusals that must say what they
    protected."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in Path(folder).iterdir())
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                       if len(names) > limit else "")


def os_error_naming(e, path):
    """`e` as an OSError whose message names `path` (one line: the path and the OS
    error), for errors raised without a file name (h5py, fsync, a full disk)."""
    if getattr(e, "filename", None):
        return e
    if e.errno is None:
        return OSError(f"{path}: {e}")
    return OSError(e.errno, e.strerror or str(e), str(path))


def sha256_of(path, chunk=1 << 20):
    """Hex sha256 of a file, read in chunks (weights files can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path, before_replace=None):
    """Yield a temporary path beside `path` (same suffix, so `.weights.h5` / `.png` writers
    accept it); rename it over `path` when the block succeeds. before_replace(tmp), if
    given, runs after the block and before the rename (e.g. to record a checksum)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        yield tmp
        if before_replace is not None:
            before_replace(tmp)
        if tmp.exists():
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise os_error_naming(e, path) from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise



@contextlib.contextmanager
def atomic_dir(path):
    """atomic_path for writers that make a folder (a SavedModel, a corpus) or that must
    not be handed a predictable name (a converter that would follow a planted link).

    Yields `path`'s name inside a fresh private staging folder beside it (mkdtemp: a new,
    unique name, never a link) and renames what the block wrote there over `path`. A
    folder already at `path` is moved aside first (a rename cannot replace a non-empty
    folder) and deleted after; the staging folder is removed in every case."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-{path.name}.",
                                    dir=path.parent))
    staged = staging / path.name
    try:
        yield staged
        os.chmod(staged, 0o755 if staged.is_dir() else 0o644)
        old = staging / ".old" if path.is_dir() and not path.is_symlink() else None
        if old:
            os.rename(path, old)
        try:
            os.replace(staged, path)
        except OSError:
            if old:
                os.rename(old, path)  # keep what was there
            raise
    except OSError as e:
        raise os_error_naming(e, path) from e
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def remove_orphaned_temporaries(folder):
    """Delete the temporary files and folders (.tmp-PID-*) that atomic_path / atomic_dir
    left anywhere under `folder` when their process was killed mid-write (its PID no longer
    runs; another process's write in progress is left alone). Returns what was removed."""
    removed = []
    for root, dirs, files in os.walk(folder):
        for name in list(dirs) + files:
            match = _TEMPORARY.match(name)
            if not match or int(match.group(1)) == os.getpid() or _running(int(match.group(1))):
                continue
            path = Path(root) / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                dirs.remove(name)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_text(path, text):
    """Write `text` to `path` atomically (flushed and fsynced before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_weights(model, path):
    """model.save_weights(path), atomically."""
    with atomic_path(path) as tmp:
        model.save_weights(tmp)

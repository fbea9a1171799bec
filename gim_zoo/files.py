"""Files that are never half-written: every writer in gim_zoo goes through `atomic_path`.

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
from pathlib import Path


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

"""Files that never come out half-written: atomic writes with fsync, Keras model save/load, gzip size.

Every file edgeopt writes goes through :func:`write_atomic` (temporary file beside the target, fsync,
rename), so a reader sees the old file or the complete new one, never a partial file, even after a crash.
Saved models are loaded with ``safe_mode=True``: no Lambda layer or other code from a file ever runs.
"""
from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgeopt._keras import keras  # load_model_safe imports it when called: writing a file loads no TensorFlow

__all__ = ["gzip_size", "load_model_safe", "save_model_atomic", "save_weights_atomic", "write_atomic"]


def write_atomic(path: str | os.PathLike, data: bytes | str, overwrite: bool = False) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to a temporary file beside ``path``, fsync it, rename it into place.

    Readers see the old file or the complete new one, never a partial file. Without ``overwrite`` an
    existing ``path`` raises FileExistsError (checked atomically with a hard link where supported).
    Returns ``path``.
    """
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        if overwrite:
            os.replace(tmp, path)
        else:
            _link_no_clobber(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _link_no_clobber(tmp: str, path: Path) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it") from None
    except OSError:  # file systems without hard links
        if path.exists():
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it") from None
        os.replace(tmp, path)


def _replace_synced(tmp: Path, path: Path) -> None:
    """fsync a file Keras wrote to ``tmp``, then rename it over ``path``."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save the whole model (``.keras``) to ``path`` through a synced temporary file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save(tmp)
    _replace_synced(tmp, path)


def save_weights_atomic(model: keras.Model, path: str | os.PathLike) -> None:
    """Save the model's weights (``.weights.h5``) to ``path`` through a synced temporary file."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{path.name}")
    model.save_weights(tmp)
    _replace_synced(tmp, path)


def load_model_safe(path: str | os.PathLike) -> keras.Model:
    """A saved .keras model, never running code from the file (Lambda layers are refused)."""
    from edgeopt._keras import keras  # lazy: writing a file (write_atomic) loads no TensorFlow

    return keras.models.load_model(path, safe_mode=True, compile=False)


def gzip_size(data: bytes) -> int:
    """Bytes after gzip level 9 (mtime 0, so the same bytes always give the same size): what a download costs."""
    return len(gzip.compress(data, 9, mtime=0))

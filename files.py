"""One way to write a file: staged beside its target, flushed to disk, readable by colleagues, renamed.

Every file leisim writes goes through :func:`atomic_write`: a reader (or a process killed midway)
sees the previous file or the complete new one, never a part. Guarantees:

- the staging file lives in the target's folder (``os.replace`` is atomic only within one file
  system) under a hidden name, removed if anything fails;
- its contents are flushed and fsynced before the rename, and the folder after it, so a power
  loss does not leave an empty file under the final name;
- its mode is ``0o666`` minus the umask, as ``open()`` would give (``tempfile.mkstemp`` makes
  files private, 0600, which colleagues on a shared drive cannot read).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

# What atomic_write's staging files look like (left behind only by a process killed mid-write).
STAGING_GLOB = ".*.partial*"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders: the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path: str | Path, write: str | bytes | Callable[[Path], None]) -> Path:
    """Write ``path`` atomically: ``write`` is the text, the bytes, or a function that writes the staging path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".partial{path.suffix}")
    staging = Path(name)
    try:
        if callable(write):
            os.close(fd)
            fd = -1
            write(staging)
        else:
            data = write.encode("utf-8") if isinstance(write, str) else write
            with os.fdopen(fd, "wb") as handle:
                fd = -1
                handle.write(data)
        with open(staging, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(staging, 0o666 & ~_umask())
        os.replace(staging, path)
        _fsync_folder(path.parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        staging.unlink(missing_ok=True)
        raise
    return path


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside ``target``; on success its files are fsynced and it replaces
    ``target`` (renamed into place); on any failure it is removed and ``target`` is as it was.

    The guarantees of :func:`atomic_write` for a set of files that must appear together (a run's
    summary.json, results.nc and figures): a reader sees the previous folder or the complete new
    one. The caller decides whether ``target`` may be replaced (cli.guard_output_folder).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should not be
    try:
        yield staging
        for item in staging.rglob("*"):
            if item.is_file() and not item.is_symlink():
                with open(item, "rb+") as handle:
                    os.fsync(handle.fileno())
                os.chmod(item, 0o666 & ~_umask())
        _fsync_folder(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    _fsync_folder(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

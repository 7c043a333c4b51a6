"""Output folders: which folder a command may write or replace, its marker, its lock.

Never lose a user's file: an output folder is replaced only when leisim wrote it (its marker says
so), never when it is or holds an input, the working folder, or a link; one run at a time writes
it (an OS lock that dies with the process); a write that fails mid-run keeps the finished chunks.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from pathlib import Path

from .errors import InputError


def _version() -> str:
    from . import __version__

    return __version__


CHECKPOINT = ".checkpoint"  # inside the output folder: finished chunks of an unfinished run


# Every output folder leisim writes carries this marker (what wrote it, when, which version):
# --overwrite replaces a folder only if leisim wrote it, never a folder of the user's own files.
OUTPUT_MARKER = ".leisim-output.json"
# Folders written before the marker existed: a run's or a stress run's outputs and nothing else.
LEGACY_RUN_FILES = {"summary.json", "results.nc", "report.html", "stress.json", "stress.nc", "reverse.json",
                    CHECKPOINT}


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` (a staging folder about to become an output) as written by leisim."""
    import datetime as dt

    (folder / OUTPUT_MARKER).write_text(json.dumps({
        "written_by": "leisim", "kind": kind, "version": _version(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}, indent=2) + "\n")


def _is_leisim_output(folder: Path, entries: list[str]) -> bool:
    if OUTPUT_MARKER in entries:
        return True
    names = set(entries)
    return bool(names & {"summary.json", "stress.json", CHECKPOINT}) and all(
        n in LEGACY_RUN_FILES or n.endswith(".png") for n in names)


def guard_output_folder(out_dir: Path, *, overwrite: bool, what: str = "outputs", inputs=()) -> None:
    """Refuse an output folder that leisim must not write or replace, before any work starts.

    Refused always: a symbolic link, a file, the working folder or one above it, a folder that is
    or holds one of the run's ``inputs``, and a folder whose parent cannot be written. A folder
    holding files is refused without ``--overwrite``, and with it unless leisim wrote it.
    """
    out_dir = Path(out_dir)
    if out_dir.is_symlink():
        raise InputError(f"{out_dir} is a symbolic link; give --out the real folder (leisim replaces the folder "
                         "it writes, and would replace the link)", field="--out", value=str(out_dir))
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file, not an output folder; give --out another path",
                         field="--out", value=str(out_dir))
    resolved = out_dir.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise InputError(f"{out_dir} is the working folder or one above it; give --out a folder of its own "
                         "(leisim replaces the whole output folder)", field="--out", value=str(out_dir))
    for item in inputs:
        if item is None:
            continue
        source = Path(item).resolve()
        if source == resolved or resolved in source.parents:
            raise InputError(f"{out_dir} is or holds an input of this run ({item}); give --out another folder",
                             field="--out", value=str(out_dir))
    parent = resolved.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot create {out_dir}: {parent} is not a writable folder; give --out a writable place",
                         field="--out", value=str(out_dir))
    entries = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    if not entries:
        return
    if not overwrite:
        if entries == [CHECKPOINT]:
            raise InputError(f"{out_dir} holds an unfinished run: `leisim simulate --resume {quote(out_dir)}` "
                             "finishes it, --overwrite starts again", field="--out", value=str(out_dir))
        raise InputError(f"{out_dir} already holds {what} ({', '.join(entries[:4])}); pass --overwrite to "
                         "replace them, or choose another --out", field="--out", value=str(out_dir))
    if not _is_leisim_output(out_dir, entries):
        raise InputError(f"{out_dir} holds files leisim did not write ({', '.join(entries[:4])}); --overwrite "
                         "replaces only folders leisim wrote: choose another --out, or empty it yourself",
                         field="--out", value=str(out_dir))


def lock_output(out_dir: Path):
    """An exclusive OS lock on ``out_dir`` (a lock file beside it), held while the returned file is open.

    A second run into the same folder is refused at once (exit 2) instead of mixing its years
    with the first's; the lock dies with the process that holds it (a killed run leaves none).
    """
    import fcntl

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    path = out_dir.parent / f".{out_dir.name}.leisim-lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        raise InputError(f"another leisim run ({holder or 'pid unknown'}) is writing {out_dir}; wait for it to "
                         "finish, or give --out another folder", field="--out", value=str(out_dir)) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


def release(lock) -> None:
    """Remove the lock file of a finished run (still holding the lock), then let it go."""
    if lock is None:
        return
    Path(lock.name).unlink(missing_ok=True)
    lock.close()


def command_line() -> str:
    """The leisim command line that ran (the root click context's arguments, else sys.argv), quoted
    so that it can be pasted back into a shell."""
    import sys

    import click

    ctx = click.get_current_context(silent=True)
    args = ctx.find_root().meta.get("leisim_args") if ctx is not None else None
    return shlex.join(["leisim"] + (args if args is not None else sys.argv[1:]))


def quote(path) -> str:
    return shlex.quote(str(path))


def write_failure(err: OSError, checkpoint: Path, out_dir: Path) -> InputError:
    """What to say when a file cannot be written mid-run: the finished chunks stay; how to go on."""
    import errno

    kept = len(list(checkpoint.glob("*.npz.seal"))) if checkpoint.is_dir() else 0
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(err) or "errno = 28" in str(err):
        fix = "free some space on that disk"
    elif err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        fix = "make the folder writable again"
    else:
        fix = "fix the cause"
    where = err.filename or str(out_dir)
    return InputError(f"cannot write ({reason}); the run stopped and its {kept} finished chunk(s) are kept in "
                      f"{checkpoint}: {fix}, then finish it with `leisim simulate --resume {quote(out_dir)}`",
                      file=str(where))


def output_bytes(store, years: int) -> float:
    """Disk the outputs need: results.nc (about the checkpoint's size: the same per-year values) and figures."""
    chunk_bytes = sum(p.stat().st_size for p in store.path.glob("main-*.npz"))
    return 1.3 * chunk_bytes + 8.0 * years * 4 + 20e6


def free_bytes(path: Path) -> int:
    probe = Path(path).resolve()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free

"""A run's checkpoint on disk: finished chunks of years, each in its own file (host side, I/O).

Layout of a checkpoint directory::

    manifest.json            what the run is (arguments, input fingerprint, chunk size)
    main-000000000000.npz    the records (results.record) of years 0 .. chunk-1
    main-000000010000.npz    ...
    point-000000000000.npz   a second stream (the point-estimate run), if any

Each chunk file is written under a staging name and renamed into place (files.atomic_write), so
a run killed at any moment (SIGKILL included) leaves only whole chunks; a resumed run simulates the missing
chunks and nothing else. Files hold plain arrays (``np.savez``, read with ``allow_pickle=False``).
Reading a stream back yields its records in year order, one chunk at a time, so the summary and
results.nc are computed in constant memory (:mod:`leisim.simulator.results`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..files import STAGING_GLOB, atomic_write, sha256_file

MANIFEST = "manifest.json"
_CHUNK = re.compile(r"^(?P<stream>[a-z]+)-(?P<start>\d{12})\.npz$")


SEAL = ".seal"


class CheckpointError(ValueError):
    """The checkpoint is missing, damaged or belongs to another run."""


class ChunkStore:
    """Finished chunks of a run, by stream name and first year."""

    def __init__(self, path: Path, manifest: dict):
        self.path = Path(path)
        self.manifest = manifest

    @classmethod
    def create(cls, path: Path, manifest: dict) -> ChunkStore:
        """A new, empty checkpoint at ``path`` (an existing one there is replaced)."""
        path = Path(path)
        if path.exists():
            for item in path.iterdir():
                item.unlink()
        path.mkdir(parents=True, exist_ok=True)
        atomic_write(path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        return cls(path, manifest)

    @classmethod
    def open(cls, path: Path) -> ChunkStore:
        """The checkpoint at ``path``; leftover temporary files of a killed run are removed."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path / MANIFEST}: no checkpoint here (is this the output folder of a "
                                  "run that was interrupted?)") from None
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{path / MANIFEST}: damaged checkpoint manifest ({err})") from None
        for tmp in path.glob(STAGING_GLOB):
            tmp.unlink(missing_ok=True)
        return cls(path, manifest)

    def chunk_path(self, stream: str, start: int) -> Path:
        return self.path / f"{stream}-{start:012d}.npz"

    def _check(self, item: Path) -> str | None:
        """Why a chunk file cannot be used (None: it is sound and belongs to this run).

        Each chunk has a seal beside it (``<chunk>.seal``: its SHA-256 and the run's fingerprint),
        written after the chunk: a chunk without a seal (killed in between), with another
        run's fingerprint, with other bytes (truncated, flipped) or that does not load is unusable.
        """
        seal_path = item.with_name(item.name + SEAL)
        try:
            seal = json.loads(seal_path.read_text())
        except (OSError, ValueError):
            return "no seal (written by a run killed mid-write, or by another version)"
        if seal.get("fingerprint") != self.manifest.get("fingerprint"):
            return "written by another run (its fingerprint differs)"
        if seal.get("sha256") != sha256_file(item):
            return "damaged (its bytes differ from the checksum written with it)"
        try:
            with np.load(item, allow_pickle=False) as data:
                int(data["gross"].shape[0])
        except Exception as err:  # noqa: BLE001 - any failure to read means the chunk is unusable
            return f"unreadable ({type(err).__name__})"
        return None

    def done(self, stream: str) -> dict[int, int]:
        """``{start: years}`` of the sound chunks of ``stream`` on disk; unusable ones are removed
        (they are simulated again) and listed in ``self.discarded``."""
        out = {}
        self.discarded = getattr(self, "discarded", [])
        for item in sorted(self.path.iterdir()):
            match = _CHUNK.match(item.name)
            if not (match and match["stream"] == stream):
                continue
            problem = self._check(item)
            if problem is not None:
                self.discarded.append(f"{item.name}: {problem}")
                item.unlink(missing_ok=True)
                item.with_name(item.name + SEAL).unlink(missing_ok=True)
                continue
            with np.load(item, allow_pickle=False) as data:
                out[int(match["start"])] = int(data["gross"].shape[0])
        return out

    def put(self, stream: str, start: int, record: dict[str, np.ndarray]) -> None:
        """Write one chunk's record atomically, then its seal (checksum and the run's fingerprint)."""
        arrays = {name: np.asarray(value) for name, value in record.items()}
        path = self.chunk_path(stream, start)
        atomic_write(path, lambda staging: _savez(staging, arrays))
        seal = {"sha256": sha256_file(path), "fingerprint": self.manifest.get("fingerprint")}
        atomic_write(path.with_name(path.name + SEAL), json.dumps(seal))

    def years(self, stream: str, total: int) -> StoredYears:
        """The records of ``stream``, which must cover years ``0 .. total - 1`` exactly."""
        done = self.done(stream)
        expected, missing = 0, []
        for start in sorted(done):
            if start != expected:
                missing.append((expected, start))
            expected = start + done[start]
        if missing or expected != total:
            raise CheckpointError(f"{self.path}: stream {stream!r} covers {sum(done.values())} of {total} years "
                                  f"(gaps: {missing or [(expected, total)]})")
        return StoredYears([self.chunk_path(stream, s) for s in sorted(done)], total)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # a handle: np.savez would add ".npz" to a path not ending in it
        np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy stubs: names as keywords


class StoredYears:
    """Records read back from chunk files, one file at a time, in year order.

    Each record reads an array from its file only when it is first looked up, so a pass that
    needs one column reads that column and not the whole chunk.
    """

    def __init__(self, paths: list[Path], years: int):
        self.paths, self.years = paths, years

    def records(self):
        for path in self.paths:
            with np.load(path, allow_pickle=False) as data:
                yield _LazyRecord(data)


class _LazyRecord(Mapping):
    def __init__(self, data):
        self._data, self._cache = data, {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            self._cache[name] = self._data[name]
        return self._cache[name]

    def __iter__(self):
        return iter(self._data.files)

    def __len__(self) -> int:
        return len(self._data.files)


class MemoryYears:
    """Records held in memory (a whole run, or one chunk)."""

    def __init__(self, records: list[dict[str, np.ndarray]]):
        self._records = list(records)
        self.years = sum(int(r["gross"].shape[0]) for r in self._records)

    def records(self):
        yield from self._records


class MemoryStore:
    """The :class:`ChunkStore` interface in memory (the Python API's runs): the same records, no files."""

    def __init__(self) -> None:
        self._chunks: dict[tuple[str, int], dict[str, np.ndarray]] = {}
        self.discarded: list[str] = []

    def done(self, stream: str) -> dict[int, int]:
        return {start: int(r["gross"].shape[0]) for (name, start), r in self._chunks.items() if name == stream}

    def put(self, stream: str, start: int, record: dict[str, np.ndarray]) -> None:
        self._chunks[(stream, start)] = {name: np.asarray(value) for name, value in record.items()}

    def years(self, stream: str, total: int):
        starts = sorted(self.done(stream))
        held = MemoryYears([self._chunks[(stream, s)] for s in starts])
        if held.years != total:
            raise CheckpointError(f"stream {stream!r} holds {held.years} of {total} years")
        return held

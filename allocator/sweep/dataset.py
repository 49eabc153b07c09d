"""A sweep's results on disk: a directory of parquet parts, a manifest naming the sweep, and a lock.

- Parts (``part-*.parquet``) are written under a temporary name and moved into place with ``os.replace``, so a
  part is whole or absent. Each row carries its ``point_id`` and its ``point_index`` in the sweep's order.
- ``_sweep.json`` names the sweep file and a fingerprint of its points; it is written with the first part,
  so a sweep that fails before storing anything leaves none, and a different sweep into the same directory is
  refused instead of being mixed in.
- ``_sweep.lock`` is held (``flock``) while a sweep writes: a second process on the same directory fails at
  once with a clear error instead of storing every point twice.
- A write that fails (a full disk, a read-only filesystem) removes its temporary file and raises an InputError
  naming ``--out``, the file and the reason; the parts already stored stay as they were, and a rerun with space
  completes the sweep.
- A part that cannot be read (a truncated file) is set aside as ``_bad-<name>`` with a warning, and its
  points count as not done, so the next run recomputes them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import InputError

__all__ = ["Dataset", "read_results"]

MANIFEST = "_sweep.json"
PARETO = "_pareto.parquet"
LOCK = "_sweep.lock"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class Dataset:
    """The directory ``out`` of one sweep (see the module docstring for the files in it)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def parts(self) -> list[Path]:
        return sorted(self.out.glob("part-*.parquet"))

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the directory's lock, or raise InputError naming the directory when another process holds it."""
        path = self.out / LOCK
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise InputError(
                        f"--out: {self.out} is in use by another mixbit sweep (it holds {path}); "
                        "wait for it to finish or use another --out"
                    ) from None
                raise
            # the holder before us may have removed the file after we opened it: lock the file that is there
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
            os.close(fd)

    def _write_atomically(self, final: Path, temporary: Path, write: Callable[[Path], Any]) -> None:
        """``write(temporary)``, then move it to ``final``; on failure nothing half-written is left."""
        try:
            write(temporary)
            os.replace(temporary, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            reason = exc.strerror or (str(exc).splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"--out: {self.out}: cannot write {final.name}: {reason}; the results stored before are kept"
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise

    def manifest(self) -> dict[str, Any] | None:
        path = self.out / MANIFEST
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return {}

    def check_manifest(self, name: str, fingerprint: str, sweep_file: str) -> None:
        """Refuse a directory that holds another sweep's results (a different file or different points)."""
        manifest = self.manifest()
        if manifest is None:
            if self.parts():
                raise InputError(f"--out: {self.out} holds parquet parts but no {MANIFEST}; use an empty directory")
            return
        if manifest.get("fingerprint") != fingerprint:
            other = manifest.get("sweep_file", "another sweep file")
            raise InputError(
                f"--out: {self.out} holds the results of a different sweep ({other}, "
                f"{manifest.get('points', '?')} points); use another --out"
            )

    def write_manifest(self, name: str, fingerprint: str, sweep_file: str, points: int) -> None:
        manifest = {"name": name, "sweep_file": sweep_file, "points": points, "fingerprint": fingerprint}
        text = json.dumps(manifest, indent=1) + "\n"
        temporary = self.out / f"._sweep.{os.getpid()}.tmp"
        self._write_atomically(self.out / MANIFEST, temporary, lambda where: where.write_text(text))

    def clean_temporaries(self) -> None:
        for stale in self.out.glob(".part-*.tmp"):
            stale.unlink(missing_ok=True)
        for stale in [*self.out.glob("._sweep.*.tmp"), *self.out.glob("._pareto.*.tmp")]:
            stale.unlink(missing_ok=True)

    def _readable(self, columns: list[str]) -> Iterator[tuple[Path, Any]]:
        """(part, table of ``columns``) of every readable part; unreadable parts are set aside with a warning."""
        import pyarrow.parquet as pq

        for part in self.parts():
            try:
                schema = pq.read_schema(part)
                present = [c for c in columns if c in schema.names]
                table = pq.read_table(part, columns=present)
            except Exception as exc:  # ArrowInvalid, OSError: a truncated or foreign file
                aside = part.with_name(f"_bad-{part.name}")
                with contextlib.suppress(OSError):
                    os.replace(part, aside)
                _warn(f"{part}: unreadable parquet part ({str(exc).splitlines()[0]}); moved to {aside.name}, "
                      "its points will be recomputed")  # fmt: skip
                continue
            yield part, table

    def _readable_all(self) -> Iterator[tuple[Path, Any]]:
        """(part, whole table) of every readable part; an unreadable one is skipped with a warning."""
        import pyarrow.parquet as pq

        for part in self.parts():
            try:
                table = pq.read_table(part)
            except Exception as exc:  # ArrowInvalid, OSError: a truncated or foreign file
                _warn(f"{part}: unreadable parquet part ({str(exc).splitlines()[0]}); skipped")
                continue
            yield part, table

    def done_mask(self, total: int, ids_of: Any) -> np.ndarray:
        """Which point indices (0..total-1) are stored. Parts written without ``point_index`` are matched by id
        (``ids_of(indices)`` gives the ids of a slice of points)."""
        done = np.zeros(total, dtype=bool)
        legacy: set[str] = set()
        for _, table in self._readable(["point_index", "point_id"]):
            if "point_index" in table.column_names:
                index = table.column("point_index").to_numpy()
                done[index[(index >= 0) & (index < total)]] = True
            elif "point_id" in table.column_names:
                legacy.update(table.column("point_id").to_pylist())
        if legacy:
            for start in range(0, total, 65536):
                indices = np.arange(start, min(total, start + 65536))
                ids = ids_of(indices)
                done[indices] |= np.array([i in legacy for i in ids], dtype=bool)
        return done

    def ids(self) -> set[str]:
        ids: set[str] = set()
        for _, table in self._readable(["point_id"]):
            if "point_id" in table.column_names:
                ids.update(table.column("point_id").to_pylist())
        return ids

    def write_pareto(self) -> int:
        """Mark the Pareto front of every stored row (``pareto.pareto_mask``) in ``_pareto.parquet``; returns its
        size. Written when the sweep is complete; ``read_results`` adds it as the ``pareto`` column."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from allocator.sweep.pareto import OBJECTIVES, pareto_mask

        tables = [table for _, table in self._readable(["point_id", "error", *OBJECTIVES])]
        if not tables:
            return 0
        frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
        frame = frame.drop_duplicates("point_id", keep="first")
        mask = pareto_mask(frame)
        result = pa.table({"point_id": frame["point_id"].to_numpy(), "pareto": mask})
        temporary = self.out / f"._pareto.{os.getpid()}.tmp"
        self._write_atomically(self.out / PARETO, temporary, lambda where: pq.write_table(result, where))
        return int(mask.sum())

    def write_part(self, frame: pd.DataFrame) -> Path:
        """Write one part (one row group) under a temporary name, then move it into place."""
        ids = frame["point_id"].astype(str)
        digest = hashlib.sha256("".join(sorted(ids)).encode()).hexdigest()[:16]
        final = self.out / f"part-{digest}.parquet"
        temporary = self.out / f".part-{digest}.{os.getpid()}.tmp"
        self._write_atomically(
            final, temporary, lambda where: frame.to_parquet(where, index=False, row_group_size=max(1, len(frame)))
        )
        return final


def read_results(out: str | Path) -> pd.DataFrame:
    """All stored rows of a sweep, one per point id (duplicates dropped), sorted by point id.

    Parts may differ in result columns; an unreadable part is set aside with a warning.
    """
    dataset = Dataset(out)
    frames = [table.to_pandas() for _, table in dataset._readable_all()]
    if not frames:
        return pd.DataFrame(columns=["point_id"])
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    frame = frame.drop_duplicates("point_id", keep="first")
    pareto = dataset.out / PARETO
    if pareto.exists():
        try:
            members = pd.read_parquet(pareto)
        except Exception as exc:  # a damaged file: the rows are still good
            _warn(f"{pareto}: unreadable ({str(exc).splitlines()[0]}); rows returned without 'pareto'")
        else:
            on_front = set(members.loc[members["pareto"], "point_id"])
            frame["pareto"] = frame["point_id"].isin(on_front)
    return frame.sort_values("point_id", kind="stable").reset_index(drop=True)

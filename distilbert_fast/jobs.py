"""Resumable batch jobs that cannot be mixed up: identity, exclusive lock and verified resume for the output
of `distilbert-fast run`.

Beside OUT.jsonl live two sidecars:

* OUT.jsonl.lock   an `fcntl.flock` lock held for the whole run: a second run on the same output fails at
                   once (JobError) instead of writing every row twice.
* OUT.jsonl.job    JSON lines. The first is the job's identity: input (resolved path, size, sha256 of
                   its bytes), task, model (resolved path, sha256 of config.json, names and sizes of weight
                   files), and every option that changes results. Each later line commits one chunk:
                   {"start": i, "crc32": [crc of output line i, i+1, ...]}.

Writing a chunk appends (and fsyncs) its commit line FIRST, then appends (and fsyncs) the output lines. So
every complete output line has a recorded CRC, whatever moment a kill -9 hits; a commit whose lines never
reached the output only means those rows are recomputed.

Resume (`Job.open`) refuses, with one line naming the difference, an output whose identity differs from this
job's (another input file or the same path with other content, another task, model or option). Otherwise it
verifies the WHOLE existing output: line k must hold row k (its "index") and match the CRC recorded for row k.
A torn last line (a kill mid-write) is cut off; complete lines beyond what is recorded cannot exist by the
write order above, and any other mismatch is refused (the output was edited). The output is truncated to the
verified rows, the sidecar trimmed to match, and the run continues from there: no row is written twice or
lost, and the result equals one uninterrupted run (bench/soak.py checks this across random kill -9s).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

FORMAT = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


class JobError(Exception):
    """The job cannot start or resume; str(e) is one line for the user."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def input_identity(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path).resolve()
    return {"path": str(p), "size": p.stat().st_size, "sha256": file_sha256(p)}


def model_identity(model: str) -> dict[str, Any]:
    """A local checkpoint directory: resolved path, sha256 of config.json, weight file names and sizes (not
    their bytes: hashing gigabytes on every start would cost more than it guards). Otherwise (a hub repo id
    resolved from the HF cache) the id as given."""
    p = Path(os.path.expanduser(model))
    if not p.is_dir():
        return {"id": model}
    cfg = p / "config.json"
    weights = sorted((f.name, f.stat().st_size) for f in p.iterdir() if f.name.endswith(_WEIGHT_SUFFIXES))
    return {
        "path": str(p.resolve()),
        "config_sha256": file_sha256(cfg) if cfg.is_file() else None,
        "weights": [list(w) for w in weights],
    }


def _differences(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old value, new value) of every leaf that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for key in sorted(set(old) | set(new))
            for d in _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        ]
    return [] if old == new else [(prefix.rstrip("."), old, new)]


def _describe_difference(old: dict, new: dict) -> str:
    diffs = _differences(old, new)
    if not diffs:
        return "unknown difference"
    key, a, b = diffs[0]
    return (
        f"differs in {', '.join(k for k, _, _ in diffs)}; {key} was {json.dumps(a)[:80]}, "
        f"now {json.dumps(b)[:80]}"
    )


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Job:
    """with Job(output, identity) as job: job.done rows are verified; job.write(start, lines) appends."""

    def __init__(self, output: str | os.PathLike, identity: dict[str, Any]):
        self.output = Path(output)
        self.identity = {"format": FORMAT, **identity}
        self.record_path = self.output.with_name(self.output.name + ".job")
        self.lock_path = self.output.with_name(self.output.name + ".lock")
        self.done = 0
        self.notes: list[str] = []  # what resume repaired, for the user
        self._lock_fd: int | None = None
        self._out = self._record = None

    # -- lock ----------------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise JobError(
                f"another run is writing {self.output} (lock {self.lock_path} held by pid "
                f"{holder}); wait for it to finish or pick another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    # -- resume ----------------------------------------------------------------------------------------------
    def _read_record(self) -> tuple[dict | None, list[int], list[int], bool]:
        """(identity, crcs of rows 0.., chunk start rows, clean) from the sidecar; a torn last line is ignored
        (clean=False)."""
        raw = self.record_path.read_bytes()
        lines = raw.split(b"\n")
        clean = lines[-1] == b""
        lines = lines[:-1]  # complete lines only
        if not lines:
            return None, [], [], clean
        try:
            identity = json.loads(lines[0])["job"]
            crcs: list[int] = []
            starts: list[int] = []
            for line in lines[1:]:
                commit = json.loads(line)
                if commit["start"] != len(crcs):
                    raise ValueError("non-contiguous commit")
                starts.append(len(crcs))
                crcs.extend(int(c) for c in commit["crc32"])
        except (ValueError, KeyError, TypeError):
            raise JobError(
                f"{self.record_path} is not a job record written by `distilbert-fast run`; remove "
                f"it and {self.output}, or pick another --output"
            ) from None
        return identity, crcs, starts, clean

    def _verify_output(self, crcs: list[int]) -> list[int]:
        """Byte offset of the end of every verified row (row k ends at [k]). Reads the whole output once."""
        rows, end, ends = 0, 0, []
        with open(self.output, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    self.notes.append(f"dropping an incomplete last line of {self.output} (interrupted run)")
                    break
                body = line[:-1]
                if rows >= len(crcs) or zlib.crc32(body) != crcs[rows]:
                    raise JobError(
                        f"{self.output}: line {rows + 1} does not match what this job wrote there "
                        "(the file was edited or mixed with another output); remove it and "
                        f"{self.record_path.name}, or pick another --output"
                    )
                try:
                    index = json.loads(body)["index"]
                except (ValueError, KeyError, TypeError):
                    index = None
                if index != rows:  # only reachable through a record that was itself edited
                    raise JobError(f"{self.output}: line {rows + 1} holds row {index}, expected {rows}")
                rows += 1
                end += len(line)
                ends.append(end)
        return ends

    def _write_record(self, crcs: list[int], starts: list[int] = ()) -> None:
        """Atomically replace the sidecar by the identity plus the commits of `crcs` split at `starts`."""
        tmp = self.record_path.with_name(self.record_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps({"job": self.identity}, sort_keys=True).encode() + b"\n")
            bounds = [*starts, len(crcs)]
            for a, b in zip(bounds, bounds[1:]):
                f.write(json.dumps({"start": a, "crc32": crcs[a:b]}).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.record_path)
        _fsync_dir(self.record_path.parent)

    def open(self) -> Job:
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self._acquire()
        try:
            self._resume()
            # held open for the job's life and closed by close(): no `with` block can span it
            self._out = open(self.output, "ab")  # noqa: SIM115
            self._record = open(self.record_path, "ab")  # noqa: SIM115
        except BaseException:
            self.close()
            raise
        return self

    def _resume(self) -> None:
        has_out = self.output.exists()
        if has_out and not self.output.is_file():
            raise JobError(f"output is not a file: {self.output}")
        has_record = self.record_path.is_file()
        if has_out and self.output.stat().st_size > 0 and not has_record:
            raise JobError(
                f"{self.output} exists but has no job record ({self.record_path.name}), so it "
                "cannot be checked against this job; remove it or pick another --output"
            )
        if not has_out or not has_record:
            self.output.write_bytes(b"")
            self._write_record([])
            return
        identity, crcs, starts, clean = self._read_record()
        if identity is not None and identity != self.identity:
            why = _describe_difference(identity, self.identity)
            raise JobError(
                f"{self.output} belongs to a different job ({why}); remove it and its .job file, "
                "or pick another --output"
            )
        ends = self._verify_output(crcs)
        # Resume at the start of the first chunk not completely in the output: a chunk is recomputed whole,
        # so every row is computed in the same batch as in an uninterrupted run (same bits, not only values).
        keep = max((start for start in [*starts, len(crcs)] if start <= len(ends)), default=0)
        if keep < len(ends):
            self.notes.append(
                f"dropping rows {keep}..{len(ends) - 1} of a partly written chunk; they are recomputed"
            )
        end = ends[keep - 1] if keep else 0
        if end != self.output.stat().st_size:
            with open(self.output, "r+b") as f:
                f.truncate(end)
                f.flush()
                os.fsync(f.fileno())
        if identity is None or not clean or keep != len(crcs):
            self._write_record(crcs[:keep], [st for st in starts if st < keep])
        self.done = keep

    # -- writing ---------------------------------------------------------------------------------------------
    def write(self, start: int, lines: list[bytes]) -> None:
        """Append rows start.. (each a JSON line without its newline): commit record first, then output."""
        if start != self.done:
            raise ValueError(f"Job.write: expected rows from {self.done}, got {start}")
        commit = json.dumps({"start": start, "crc32": [zlib.crc32(line) for line in lines]}).encode() + b"\n"
        self._record.write(commit)
        self._record.flush()
        os.fsync(self._record.fileno())
        self._out.write(b"".join(line + b"\n" for line in lines))
        self._out.flush()
        os.fsync(self._out.fileno())
        self.done += len(lines)

    def close(self) -> None:
        for f in (self._out, self._record):
            if f is not None:
                f.close()
        self._out = self._record = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> Job:  # noqa: PYI034 - not subclassed
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

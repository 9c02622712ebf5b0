"""Reading rows and writing results for the Ray Data job: which files an input names, a datasource that
numbers and parses every row (so that every output row names its input row and a malformed row becomes an
error row, never a dropped one), and the jsonl / parquet writer that each actor uses for its results.

The read tasks run RowSource in pooled Ray workers; job.ship_io_by_value pickles this module by value, so
those workers never import distilbert_fast (and torch). Keep this module's imports to ray, pyarrow, the
standard library and distilbert_fast.rows (also shipped by value).
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import posixpath
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from ..rows import RowError, parse_line, parse_record

FORMATS = {".txt": ".txt", ".jsonl": ".jsonl", ".json": ".jsonl", ".ndjson": ".jsonl", ".parquet": ".parquet"}
ID_COLUMNS = ("file", "row")  # every output row: the input file and the row's 0-based index in it
BLOCK_ROWS = 1024  # rows per block the reader yields (Ray re-batches them for the actors)


class JobError(Exception):
    """A user-facing job error: one line (missing input, bad arguments, a failed Ray job)."""


# ----------------------------------------------------------------------------------------------------------
# input discovery
# ----------------------------------------------------------------------------------------------------------
def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _kind(path: str) -> str | None:
    return FORMATS.get(posixpath.splitext(path)[1].lower())


def _hidden(path: str) -> bool:  # _SUCCESS, .crc files and the like that writers leave in folders
    return posixpath.basename(path).startswith((".", "_"))


def expand_inputs(spec: str | list[str]) -> tuple[list[str], Any, str]:
    """Files named by `spec` (a file, a folder, a glob, a list of those; local or any pyarrow filesystem
    URI such as s3://, gs://, hdfs://) -> (sorted paths, filesystem or None, kind). Fails fast, in one
    line, on anything missing, unreadable, empty or of mixed formats."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise JobError("input: no input given")
    paths: list[str] = []
    filesystem = None
    for s in map(os.fspath, specs):
        if _is_uri(s):
            found, filesystem = _expand_uri(s)
        else:
            found = _expand_local(s.removeprefix("file://"))
        paths.extend(found)
    paths = sorted(dict.fromkeys(paths))
    kinds = {_kind(p) for p in paths}
    if None in kinds or not paths:
        bad = next((p for p in paths if _kind(p) is None), None)
        raise JobError(
            f"input: no .txt, .jsonl or .parquet file in {spec}"
            if bad is None
            else f"input: {bad} is not a .txt, .jsonl or .parquet file"
        )
    if len(kinds) > 1:
        raise JobError(f"input: mixed formats ({', '.join(sorted(kinds))}); give files of one format")
    return paths, filesystem, kinds.pop()


def _expand_local(path: str) -> list[str]:
    path = os.path.expanduser(path)
    if glob.has_magic(path):
        found = [p for p in glob.glob(path, recursive=True) if os.path.isfile(p)]
        if not found:
            raise JobError(f"input: no file matches {path}")
    elif os.path.isdir(path):
        found = [
            os.path.join(d, f)
            for d, _, files in os.walk(path)
            for f in files
            if _kind(f) is not None and not _hidden(f)
        ]
        if not found:
            raise JobError(f"input: no .txt, .jsonl or .parquet file in the folder {path}")
    elif os.path.isfile(path):
        found = [path]
    else:
        raise JobError(f"input not found: {path}")
    for p in found:
        if not os.access(p, os.R_OK):
            raise JobError(f"input: cannot read {p} (permission denied)")
    return [os.path.abspath(p) for p in found]


def _expand_uri(uri: str) -> tuple[list[str], Any]:
    from pyarrow import fs as pafs

    magic = glob.has_magic(uri)
    base = uri[: min(uri.find(c) for c in "*?[" if c in uri)].rsplit("/", 1)[0] if magic else uri
    try:
        filesystem, root = pafs.FileSystem.from_uri(base)
        info = filesystem.get_file_info(root)
        if info.type == pafs.FileType.File and not magic:
            return [root], filesystem
        if info.type != pafs.FileType.Directory:
            raise JobError(f"input not found: {uri}")
        listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    except JobError:
        raise
    except Exception as e:  # noqa: BLE001 - credentials, network, unknown scheme: one line
        raise JobError(f"input: cannot list {uri}: {' '.join(str(e).split())}") from None
    files = [i.path for i in listed if i.type == pafs.FileType.File and not _hidden(i.path)]
    if magic:
        pattern = root + uri[len(base) :]
        files = [p for p in files if fnmatch.fnmatchcase(p, pattern)]
    else:
        files = [p for p in files if _kind(p) is not None]
    if not files:
        raise JobError(f"input: no .txt, .jsonl or .parquet file matches {uri}")
    return files, filesystem


# ----------------------------------------------------------------------------------------------------------
# reading: numbered, parsed rows
# ----------------------------------------------------------------------------------------------------------
def input_fields(task: str) -> tuple[str, ...]:
    if task == "question-answering":
        return ("question", "context")
    return ("text", "text_pair") if task == "text-classification" else ("text",)


class RowSource(FileBasedDatasource):
    """Every row of .txt / .jsonl / .parquet files as (file, row, error, <input fields>).

    `row` counts non-blank lines (txt, jsonl) or records (parquet) from 0 in each file: for one file it is
    `distilbert-fast run`'s "index". A row that the task cannot use keeps its place with `error` set
    ("line 7: invalid JSON ..."): rows are never dropped. One read task per file (a file is not split).
    """

    def __init__(self, paths: list[str], task: str, kind: str, filesystem=None):
        super().__init__(paths, filesystem=filesystem)
        self._task, self._kind, self._fields = task, kind, input_fields(task)

    def bytes_per_row(self, sample: int = 1 << 20) -> float:
        """Input bytes per row, from the first file: its parquet footer, or the lines in its first `sample`
        bytes. The job sizes its blocks with it (job.read_blocks)."""
        from pyarrow import fs as pafs

        path = self._paths()[0]
        filesystem = self._filesystem or pafs.LocalFileSystem()
        if self._kind == ".parquet":
            import pyarrow.parquet as pq

            with filesystem.open_input_file(path) as f:
                rows, size = pq.ParquetFile(f).metadata.num_rows, f.size()
            return size / max(1, rows)
        with filesystem.open_input_stream(path) as f:
            head = f.read(sample)
        return max(1, len(head)) / max(1, head.count(b"\n") + (not head.endswith(b"\n")))

    def _open_input_source(self, filesystem, path, **open_args):
        if self._kind == ".parquet":  # parquet needs a seekable file
            return filesystem.open_input_file(path)
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str) -> Iterator[pa.Table]:
        rows: list[tuple[int, str | None, Any]] = []
        for item in self._parquet_rows(f) if self._kind == ".parquet" else self._line_rows(f):
            rows.append(item)
            if len(rows) == BLOCK_ROWS:
                yield self._block(path, rows)
                rows = []
        if rows:
            yield self._block(path, rows)

    def _line_rows(self, f) -> Iterator[tuple[int, str | None, Any]]:
        row, lineno, tail = 0, 0, b""
        while True:
            chunk = f.read(1 << 20)
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop() if chunk else b""
            for raw in lines:
                lineno += 1
                try:
                    line = raw.decode("utf-8").rstrip("\r\n")
                except UnicodeDecodeError:
                    yield row, f"line {lineno}: not valid UTF-8", None
                    row += 1
                    continue
                if not line.strip():
                    continue
                try:
                    yield row, None, parse_line(line, self._kind, self._task)
                except RowError as e:
                    yield row, f"line {lineno}: {e}", None
                row += 1
            if not chunk:
                return

    def _parquet_rows(self, f) -> Iterator[tuple[int, str | None, Any]]:
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(f)
        names = [c for c in pf.schema_arrow.names if c in self._fields]
        row = 0
        for batch in pf.iter_batches(batch_size=BLOCK_ROWS, columns=names):
            for record in batch.to_pylist():
                try:
                    yield (
                        row,
                        None,
                        parse_record({k: v for k, v in record.items() if v is not None}, self._task),
                    )
                except RowError as e:
                    yield row, f"record {row}: {e}", None
                row += 1

    def _block(self, path: str, rows: list) -> pa.Table:
        cols: dict[str, list] = {f: [] for f in self._fields}
        for _, _, value in rows:
            for f in self._fields:
                v = (
                    value
                    if isinstance(value, str) and f == "text"
                    else value.get(f)
                    if isinstance(value, dict)
                    else None
                )
                cols[f].append(v)
        return pa.table(
            {
                "file": pa.array([path] * len(rows), pa.string()),
                "row": pa.array([r[0] for r in rows], pa.int64()),
                "error": pa.array([r[1] for r in rows], pa.string()),
                **{f: pa.array(v, pa.string()) for f, v in cols.items()},
            }
        )


# ----------------------------------------------------------------------------------------------------------
# writing: each actor call's results as one file, written by the actor
# ----------------------------------------------------------------------------------------------------------
class ResultWriter:
    """Writes one actor call's result table as one .jsonl (one JSON object per row, floats exact) or
    .parquet file in the output folder, from inside the actor: no write task, no second process, no copy of
    the results through the object store. The file is named after the call's first row
    (`part-<hash of its input file>-<row>`), so a call that runs again after its actor died replaces its own
    file: every row is written exactly once. Local files appear atomically (a hidden temporary file, then a
    rename); on object stores (s3://, gs://, ...) an object appears only once its upload completes."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self._fs = None  # a pyarrow filesystem for URIs, made in the actor on first use

    def name(self, table: pa.Table) -> str:
        import hashlib

        first_file, first_row = table["file"][0].as_py(), table["row"][0].as_py()
        digest = hashlib.sha1(first_file.encode("utf-8")).hexdigest()[:12]
        return f"part-{digest}-{first_row:012d}{self.fmt}"

    def write(self, table: pa.Table) -> str:
        """Write `table` (at least one row); returns the file name."""
        name = self.name(table)
        if _is_uri(self.path):
            if self._fs is None:
                from pyarrow import fs as pafs

                self._fs, self._root = pafs.FileSystem.from_uri(self.path)
            with self._fs.open_output_stream(posixpath.join(self._root, name)) as f:
                self._write(table, f)
            return name
        final = os.path.join(self.path, name)
        tmp = os.path.join(self.path, f".{name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            self._write(table, f)
        os.replace(tmp, final)
        return name

    def _write(self, table: pa.Table, f) -> None:
        if self.fmt == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, f)
            return
        for batch in table.to_batches(max_chunksize=1024):
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in batch.to_pylist()).encode())


def prepare_output(path: str, overwrite: bool) -> None:
    """Create the output folder (with overwrite: empty it first). Local or any pyarrow filesystem URI."""
    if not _is_uri(path):
        if overwrite and os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        os.makedirs(path, exist_ok=True)
        return
    from pyarrow import fs as pafs

    try:
        filesystem, root = pafs.FileSystem.from_uri(path)
        if overwrite:
            filesystem.delete_dir_contents(root, missing_dir_ok=True)
        filesystem.create_dir(root, recursive=True)
    except Exception as e:  # noqa: BLE001 - credentials, network, unknown scheme: one line
        raise JobError(f"output: cannot create {path}: {' '.join(str(e).split())}") from None


def remove_partial_files(path: str) -> int:
    """Remove the temporary files that actors killed mid-write left in a local output folder; their calls
    ran again and wrote the final files. Returns how many were removed."""
    if _is_uri(path) or not os.path.isdir(path):
        return 0
    stale = [f for f in os.listdir(path) if f.startswith(".part-") and f.endswith(".tmp")]
    for f in stale:
        try:
            os.remove(os.path.join(path, f))
        except FileNotFoundError:
            pass
    return len(stale)


def check_output(output: str, overwrite: bool) -> tuple[str, str]:
    """(path, format) of the output folder; a non-empty local folder is refused unless `overwrite` (a
    second run must not mix its files with the first's)."""
    fmt = ".jsonl" if output.rstrip("/").lower().endswith((".jsonl", ".json")) else ".parquet"
    if not _is_uri(output):
        local = os.path.expanduser(output.removeprefix("file://"))
        if os.path.isfile(local):
            raise JobError(f"output: {output} is a file; the Ray job writes a folder of files")
        if os.path.isdir(local) and os.listdir(local) and not overwrite:
            raise JobError(
                f"output: {output} is not empty; remove it, pick another folder or pass "
                "overwrite=True (--overwrite)"
            )
        output = os.path.abspath(local)
    return output, fmt


__all__ = [
    "JobError",
    "RowSource",
    "ResultWriter",
    "prepare_output",
    "remove_partial_files",
    "expand_inputs",
    "check_output",
    "input_fields",
    "ID_COLUMNS",
]

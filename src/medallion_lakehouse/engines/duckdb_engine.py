"""DuckDB: the embedded default engine."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from medallion_lakehouse.config import DEFAULT_DUCKDB_MEMORY_LIMIT
from medallion_lakehouse.engines.base import Engine
from medallion_lakehouse.errors import ConfigError
from medallion_lakehouse.lazy_imports import ibis
from medallion_lakehouse.storage import delta
from medallion_lakehouse.storage.delta import (
    HIVE_NULL,
    CommitInfo,
    WriteResult,
    WriteSpec,
    add_actions,
    arrow_schema,
    open_table,
)

if TYPE_CHECKING:
    import duckdb
    import ibis.expr.types as ir
    from deltalake import DeltaTable

_names = itertools.count()
BATCH_ROWS = 256 * 1024
# Up to this many rows a write streams into delta-rs, whose read-ahead may then hold up to
# the whole write: about 2.5 GB of silver rows as Arrow, within the default memory limit's
# size (10M rows: 4.5 GiB peak for the run, against 3.2 GiB through DuckDB's COPY).
STREAM_MAX_ROWS = 12_000_000
# Up to this many rows a cached table is a temp table, uncompressed in memory (silver's cached
# parse: about 190 bytes a row, 1.9 GiB at 10M). A bigger one outgrows the default memory limit
# and spilled uncompressed (35 GiB at 100M, read back by every query of the step), so it is
# built in a database file instead, which DuckDB stores compressed (about 3.4x smaller).
CACHE_MEMORY_MAX_ROWS = 12_000_000
CACHE_DB = "medallion_cache"


class DuckDBEngine(Engine):
    name = "duckdb"

    def __init__(
        self,
        storage_options: Mapping[str, str] | None = None,
        *,
        memory_limit: str | None = None,
        temp_dir: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        super().__init__(storage_options)
        self._memory_limit = memory_limit
        self._temp_dir = temp_dir
        self._cache_dir = cache_dir
        self._cache_file: Path | None = None
        self._file_cached: set[str] = set()
        self._backend: Any = None
        if memory_limit and memory_limit != DEFAULT_DUCKDB_MEMORY_LIMIT:
            # Checked now, on a bare connection (milliseconds), so a bad setting stops the
            # command before any work rather than at its first query. The default needs no
            # check (a test sets it), and skipping the probe spares a command that never
            # queries (a rerun with nothing new) importing DuckDB, 0.4 s.
            import duckdb

            with contextlib.closing(duckdb.connect()) as probe:
                _set_memory_limit(probe, memory_limit)

    @property
    def backend(self) -> Any:
        """The Ibis DuckDB backend, connected on first use: writes of Arrow from the driver,
        deletes and history go through delta-rs alone, so a run with nothing to compute (a
        rerun with nothing new) never loads DuckDB's Ibis backend, about 0.6 s."""
        if self._backend is None:
            self._backend = self._connect()
        return self._backend

    @property
    def raw(self) -> duckdb.DuckDBPyConnection:
        connection: duckdb.DuckDBPyConnection = self.backend.con
        return connection

    def _connect(self) -> Any:
        backend = ibis.duckdb.connect()
        raw: duckdb.DuckDBPyConnection = backend.con
        # Keep insertion order so that lineage (_source_line) and "latest wins" stay stable.
        raw.execute("SET preserve_insertion_order = true")
        # Spark's name for reading a JSON member as text, so silver's pure transforms read
        # `_rescued_data` the same way on both engines (a macro is inlined: no call overhead).
        raw.execute("CREATE OR REPLACE MACRO get_json_object(j, p) AS json_extract_string(j, p)")
        if self._temp_dir is not None:
            # An in-memory database spills to ./.tmp by default: keep it inside the workspace.
            # DuckDB creates the spill folder on first spill but not its parents.
            with contextlib.suppress(OSError):  # read-only workspace: reads never spill
                self._temp_dir.parent.mkdir(parents=True, exist_ok=True)
            raw.execute("SET temp_directory = ?", [str(self._temp_dir)])
        if self._memory_limit:
            _set_memory_limit(raw, self._memory_limit)
        return backend

    def read_delta(self, uri: str, *, schema: pa.Schema, version: int | None = None) -> ir.Table:
        table = open_table(uri, version=version, storage_options=self.storage_options)
        if table is None:
            return self.from_arrow(schema.empty_table())
        # DuckDB's delta extension cannot be downloaded here, so read exactly the snapshot's live
        # files (never the folder: it holds removed files too).
        name = f"delta_{next(_names)}"
        source = self._live_files_sql(table)
        if source is not None:
            self.raw.execute(f'CREATE TEMP VIEW "{name}" AS {source}')
        else:
            self.raw.register(name, table.to_pyarrow_dataset())
        return self.backend.table(name)

    def _live_files_sql(self, table: DeltaTable) -> str | None:
        """A query over the live files with DuckDB's own Parquet reader; None: use Arrow.

        DuckDB plans Parquet with real row counts and reads it in parallel; an Arrow dataset scan
        is estimated at one row, which put the 10M-row bronze on the build side of the
        quarantine join (+3.8 GiB). Object stores (no httpfs extension here), non-string
        partition columns, folder names that would not give the logged partition values back
        verbatim, and tables whose files lack a column of the schema keep Arrow.
        """
        schema = arrow_schema(table)
        partitions = list(table.metadata().partition_columns)
        if not _is_local(table.table_uri):
            return None
        if any(not pa.types.is_string(schema.field(c).type) for c in partitions):
            return None
        files = _files_in_partition_folders(table, partitions)
        if not files:
            return None
        options = ["union_by_name = true"]
        if partitions:
            types = ", ".join(f"{_quote(c)}: 'VARCHAR'" for c in partitions)
            options += ["hive_partitioning = true", f"hive_types = {{{types}}}"]
        else:
            options.append("hive_partitioning = false")
        paths = ", ".join(_quote(f) for f in files)
        scan = f"read_parquet([{paths}], {', '.join(options)})"
        if set(schema.names) - set(self.raw.sql(f"SELECT * FROM {scan}").columns):
            return None
        columns = ", ".join(_ident(n) for n in schema.names)
        return f"SELECT {columns} FROM {scan}"

    def from_arrow(self, data: pa.Table) -> ir.Table:
        name = f"arrow_{next(_names)}"
        self.raw.register(name, data)
        return self.backend.table(name)

    def reader(self, expr: ir.Expr) -> pa.RecordBatchReader:
        """Stream the result of an expression as Arrow batches.

        Ibis 12's own `to_pyarrow_batches` calls an API duckdb 2.0 removed, so compile the
        expression and stream it through duckdb's relation API.
        """
        return self.raw.sql(self._sql(expr)).to_arrow_reader(BATCH_ROWS)

    def _sql(self, expr: ir.Expr) -> str:
        """The expression as DuckDB SQL, its in-memory tables registered."""
        self.backend._run_pre_execute_hooks(expr)
        sql: str = self.backend.compile(expr)
        return sql

    def to_arrow(self, expr: ir.Expr) -> pa.Table:
        return self.reader(expr).read_all()

    def write_delta(self, expr: ir.Table, uri: str, spec: WriteSpec) -> WriteResult:
        # Row order inside a table's files means nothing (versions are ordered by lineage
        # columns). The reader is lazy, so the setting must hold while delta-rs consumes it.
        if self._writes_parquet(uri, spec):
            return self._copy_and_commit(expr, uri, spec)
        with self.unordered():
            return self.write_arrow(self.reader(expr.select(*spec.schema.names)), uri, spec)

    def _writes_parquet(self, uri: str, spec: WriteSpec) -> bool:
        """Whether DuckDB writes the data files itself (then delta-rs commits them).

        delta-rs reads a stream it is given ahead of its single writer without bound: a
        producer faster than the writer (silver's write at 30M rows) piled 3 GiB of batches up
        beside DuckDB's own limit. DuckDB's COPY writes in parallel inside that limit, but
        costs more CPU (10M rows: 111 against 77 CPU-s for the whole run, spilling the cached
        parse to make room), so a write known to be at most STREAM_MAX_ROWS still streams.
        Local partitioned tables only (no httpfs extension here; an unpartitioned COPY writes
        one file), and not a table whose schema lacks columns of the contract (delta-rs'
        merge adds them).
        """
        if not spec.partition_by or spec.replaces_nothing or not _is_local(uri):
            return False
        if spec.rows is not None and spec.rows <= STREAM_MAX_ROWS:
            return False
        return not delta.lacks_columns(
            open_table(uri, storage_options=self.storage_options), spec.schema
        )

    def _copy_and_commit(self, expr: ir.Table, uri: str, spec: WriteSpec) -> WriteResult:
        conformed = expr.select(
            *[expr[f.name].cast(ibis.dtype(f.type)).name(f.name) for f in spec.schema]
        )
        sql = self._sql(conformed)
        root = Path(unquote(_local_path(uri))).resolve()
        root.mkdir(parents=True, exist_ok=True)
        partitions = ", ".join(_ident(c) for c in spec.partition_by)
        # APPEND never removes a file; the uuid names are new, and the files stay invisible
        # until the commit lists them (a crash leaves orphans that `vacuum` removes).
        options = (
            f"FORMAT parquet, PARTITION_BY ({partitions}), APPEND, "
            f"FILENAME_PATTERN 'part-{{uuid}}', ROW_GROUP_SIZE {delta.ROW_GROUP_ROWS}, "
            "RETURN_STATS true"
        )
        with self.unordered():
            written = self.raw.execute(f"COPY ({sql}) TO {_quote(str(root))} ({options})")
            rows = written.fetchall()
        files = []
        for name, _count, _size, *_, keys, _extra in rows:
            path = Path(name)
            info = path.stat()
            files.append(
                delta.WrittenFile(
                    # As on disk: delta-rs URL-encodes the path it logs (DuckDB's folder
                    # `a%20b` becomes `a%2520b`, as delta-rs' own writer logs it).
                    path=path.relative_to(root).as_posix(),
                    size=info.st_size,
                    partition_values={c: (keys or {}).get(c) for c in spec.partition_by},
                    modification_time_ms=info.st_mtime_ns // 1_000_000,
                    metadata=pq.read_metadata(path),
                )
            )
        return delta.commit_files(uri, files, spec, storage_options=self.storage_options)

    @contextlib.contextmanager
    def unordered(self) -> Iterator[None]:
        # An order-preserving plan buffers its result to keep the order, and DuckDB's advice
        # for a query that would exceed memory_limit starts with dropping it.
        import duckdb

        self.raw.execute("SET preserve_insertion_order = false")
        try:
            yield
        except BaseException:
            # A failed stream can leave the connection refusing calls ("busy"): that refusal
            # must not replace the error that stopped the write.
            with contextlib.suppress(duckdb.Error):
                self.raw.execute("SET preserve_insertion_order = true")
            raise
        self.raw.execute("SET preserve_insertion_order = true")

    # -- Delta through delta-rs (storage.delta) -----------------------------------------------
    def write_arrow(
        self,
        data: pa.Table | pa.RecordBatchReader | Iterable[pa.RecordBatch],
        uri: str,
        spec: WriteSpec,
    ) -> WriteResult:
        return delta.write_arrow(uri, data, spec, storage_options=self.storage_options)

    # -- tables cached for one step -----------------------------------------------------------
    def cache(self, expr: ir.Table, *, rows: int | None = None) -> ir.Table:
        if rows is None or rows <= CACHE_MEMORY_MAX_ROWS or self._cache_dir is None:
            return expr.cache()
        sql = self._sql(expr)
        name = f"cached_{next(_names)}"
        self._attach_cache_file()
        self.raw.execute(f"CREATE TABLE {CACHE_DB}.{_ident(name)} AS {sql}")
        self._file_cached.add(name)
        return self.backend.table(name, database=f"{CACHE_DB}.main")

    def release_cached(self, table: ir.Table) -> None:
        name = table.op().name
        if name not in self._file_cached:
            super().release_cached(table)
            return
        self.raw.execute(f"DROP TABLE IF EXISTS {CACHE_DB}.{_ident(name)}")
        self._file_cached.discard(name)
        if not self._file_cached:
            # Dropping a table does not shrink the file: the file goes with the last table.
            self._detach_cache_file()

    def _attach_cache_file(self) -> None:
        if self._cache_file is not None:
            return
        assert self._cache_dir is not None
        self._cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_cache_files(self._cache_dir)
        path = self._cache_dir / f"cache-{os.getpid()}.duckdb"
        _remove_database_files(path)  # a stale file of this pid's earlier life
        self.raw.execute(f"ATTACH {_quote(str(path))} AS {CACHE_DB}")
        self._cache_file = path

    def _detach_cache_file(self) -> None:
        if self._cache_file is None:
            return
        import duckdb

        with contextlib.suppress(duckdb.Error):  # a failed step: the file goes all the same
            self.raw.execute(f"DETACH {CACHE_DB}")
        _remove_database_files(self._cache_file)
        self._cache_file = None
        self._file_cached.clear()

    def drop_cached(self, name: str) -> None:
        # ibis 12 with sqlglot 30 renders DuckDB's DROP (release and drop_table alike) without
        # the table name, so the statement is written here.
        self.raw.execute(f'DROP TABLE IF EXISTS "{name}"')

    def delete_where(self, uri: str, predicate: str, *, commit: CommitInfo) -> int:
        return delta.delete_where(
            uri, predicate, commit=commit, storage_options=self.storage_options
        )

    def history(self, uri: str, limit: int | None = None) -> list[dict[str, Any]]:
        return delta.history(uri, limit=limit, storage_options=self.storage_options)

    def close(self) -> None:
        if self._backend is not None:
            self._detach_cache_file()
            self._backend.con.close()
            self._backend = None


def _set_memory_limit(connection: duckdb.DuckDBPyConnection, limit: str) -> None:
    import duckdb

    try:
        connection.execute("SET memory_limit = ?", [limit])
    except duckdb.Error as exc:
        raise ConfigError(
            f"duckdb_memory_limit {limit!r} is not a size DuckDB understands "
            "(use e.g. '3GB' or '500MB')."
        ) from exc


def remove_stale_cache_files(folder: Path) -> list[Path]:
    """Remove the cache databases of processes that are gone (a step killed before its
    release); a file whose process still runs is left alone. The files removed.

    Only a step holding the lake's one-writer lease caches above the bound, so no other
    writer's live file is here; the process check keeps a reader's or a test's own files.
    """
    removed = []
    for path in folder.glob("cache-*.duckdb"):
        pid = path.stem.removeprefix("cache-")
        if not pid.isdigit() or _running(int(pid)):
            continue
        _remove_database_files(path)
        removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _remove_database_files(path: Path) -> None:
    for file in (path, path.with_name(path.name + ".wal")):
        file.unlink(missing_ok=True)


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def _local_path(uri: str) -> str:
    return uri.removeprefix("file://")


def _quote(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _files_in_partition_folders(table: DeltaTable, partitions: Sequence[str]) -> list[str]:
    """Absolute paths of the live files, or [] unless each sits in `col=value/` folders that
    spell its logged partition values verbatim.

    DuckDB's hive partitioning reads the values from the folder names, but the Delta log is the
    truth and a writer may name or escape folders otherwise, so check before trusting them.
    """
    actions = add_actions(table)
    root = _local_path(table.table_uri).rstrip("/")
    if not Path(root).is_dir():  # a table URI may come percent-encoded ("my%20lake")
        root = unquote(root)
        if not Path(root).is_dir():
            return []
    logged = {c: actions.column(f"partition.{c}").to_pylist() for c in partitions}
    files = []
    for i, relative in enumerate(actions.column("path").to_pylist()):
        if "%" in relative or "://" in relative or relative.startswith("/"):
            return []  # escaped names, or a file outside the table folder
        for c in partitions:
            value = logged[c][i]
            folder = HIVE_NULL if value is None else str(value)
            if f"/{c}={folder}/" not in f"/{relative}":
                return []
        files.append(f"{root}/{relative}")
    return files

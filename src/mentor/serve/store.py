"""Durable catalogue changes: an append-only log of added and removed items.

Every server process replays the log over its bundle when it starts and polls it for changes
made by the others, so items added or removed through the service survive restarts and reach
every worker. An add stores the item's raw features (not its representation), so a reloaded
bundle of another model version embeds the same items with its own encoder.

Back ends (:func:`open_store`):

- SQLite (the default, no server): a file next to the bundle, WAL mode, ``synchronous=FULL``;
  writers take the database lock (``BEGIN IMMEDIATE``), so log order is commit order.
- PostgreSQL (``postgresql://...``, the ``store`` extra): several machines share one log;
  writers serialise on a transaction-scoped advisory lock, so sequence order is commit order
  and a poller never skips a change that commits late.
- memory: one process only, nothing survives (tests and the Python API).

Three tables per namespace: ``<ns>_log`` (seq, op, item_id, dims, features, meta, at), ``<ns>_live``
(the ids added through the service and not removed since; its primary key is what makes an id
added once however many processes race) and ``<ns>_meta`` (the schema version, checked on
open).
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mentor.errors import MentorError
from mentor.serve.errors import DuplicateIdError

NAMESPACE = "mentor_catalog"
SCHEMA = "1"


@dataclass(frozen=True)
class Change:
    """One logged change.

    Attributes:
        seq: position in the log (increasing in commit order).
        op: ``"add"``, ``"remove"`` or ``"reload"`` (every process loads a bundle again).
        item_id: the external item id; for a reload, the bundle folder ("" for the folder each
            process serves, read again).
        features: for an add, modality -> float32 [dim] raw features; None for a removal.
        meta: for an add, its display metadata (``title``, ``text``, ``image``), possibly empty.
    """

    seq: int
    op: str
    item_id: str
    features: dict[str, np.ndarray] | None = None
    meta: dict[str, str] | None = None


def pack_features(features: Mapping[str, np.ndarray]) -> tuple[str, bytes]:
    """(JSON of modality -> length, little-endian float32 bytes of the vectors in that order)."""
    dims = {m: int(np.asarray(v).shape[0]) for m, v in features.items()}
    blob = b"".join(np.asarray(v, dtype="<f4").tobytes() for v in features.values())
    return json.dumps(dims), blob


def unpack_features(dims_text: str, blob: bytes) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_features`: modality -> float32 [dim]."""
    dims = json.loads(dims_text)
    flat = np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)
    ends = np.cumsum(list(dims.values()))
    parts = np.split(flat, ends[:-1]) if len(ends) else []
    return dict(zip(dims, parts, strict=True))


def _rows(
    ids: Sequence[str],
    features: Mapping[str, np.ndarray],
    meta: Sequence[Mapping[str, str]] | None,
) -> list[tuple[str, str, bytes, str]]:
    """(item id, dims, blob, meta JSON) of each new item; ``features`` maps modality ->
    [n, dim]."""
    out = []
    for j, item in enumerate(ids):
        dims, blob = pack_features({m: np.asarray(v)[j] for m, v in features.items()})
        out.append((item, dims, blob, json.dumps(dict(meta[j]) if meta else {})))
    return out


class ChangeStore(ABC):
    """The log interface; :class:`MemoryStore`, :class:`SqliteStore`, :class:`PostgresStore`."""

    url: str = ""

    @abstractmethod
    def add(
        self,
        ids: Sequence[str],
        features: Mapping[str, np.ndarray],
        meta: Sequence[Mapping[str, str]] | None = None,
    ) -> int:
        """Log new items (``features``: modality -> float32 [len(ids), dim]; ``meta``: one
        display record per item, or None) in one transaction; returns the last seq.

        Raises:
            DuplicateIdError: an id was added through the service and not removed since (by
                this process or another); nothing is logged then.
        """

    @abstractmethod
    def remove(self, ids: Sequence[str]) -> int:
        """Log the removal of ``ids`` in one transaction; returns the last seq."""

    @abstractmethod
    def reload(self, bundle: str) -> int:
        """Log that every process is to load ``bundle`` ("": its own bundle folder, read
        again); returns the seq."""

    @abstractmethod
    def changes_after(self, seq: int) -> list[Change]:
        """Every change with a seq above ``seq``, in order."""

    def close(self) -> None:  # noqa: B027 - nothing to release unless a subclass connects
        """Release the connection (if any)."""


class MemoryStore(ChangeStore):
    """A log in this process's memory (nothing survives it)."""

    url = "memory"

    def __init__(self) -> None:
        self._log: list[Change] = []
        self._live: set[str] = set()
        self._lock = threading.Lock()

    def add(
        self,
        ids: Sequence[str],
        features: Mapping[str, np.ndarray],
        meta: Sequence[Mapping[str, str]] | None = None,
    ) -> int:
        with self._lock:
            taken = [i for i in ids if i in self._live]
            if taken:
                raise DuplicateIdError(
                    f"item id '{taken[0]}' already exists; new items need new ids"
                )
            for item, dims, blob, info in _rows(ids, features, meta):
                self._live.add(item)
                seq = len(self._log) + 1
                self._log.append(
                    Change(seq, "add", item, unpack_features(dims, blob), json.loads(info))
                )
            return len(self._log)

    def remove(self, ids: Sequence[str]) -> int:
        with self._lock:
            for item in ids:
                self._live.discard(item)
                self._log.append(Change(len(self._log) + 1, "remove", item))
            return len(self._log)

    def reload(self, bundle: str) -> int:
        with self._lock:
            self._log.append(Change(len(self._log) + 1, "reload", bundle))
            return len(self._log)

    def changes_after(self, seq: int) -> list[Change]:
        with self._lock:
            return self._log[seq:]


class _SqlStore(ChangeStore):
    """The SQL both databases share; subclasses open connections and lock writers."""

    placeholder = "?"
    blob_type = "BLOB"
    seq_type = "INTEGER PRIMARY KEY AUTOINCREMENT"
    unique_error: type[Exception] = sqlite3.IntegrityError

    def __init__(self, namespace: str) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,40}", namespace):
            raise MentorError(
                f"store namespace {namespace!r}: use lower-case letters, digits and _ only"
            )
        self.log_table = f"{namespace}_log"
        self.live_table = f"{namespace}_live"
        self.meta_table = f"{namespace}_meta"
        self._lock = threading.Lock()

    def _sql(self, text: str) -> str:
        return text.replace("?", self.placeholder)

    def _schema(self) -> list[str]:
        return [
            f"CREATE TABLE IF NOT EXISTS {self.log_table} (seq {self.seq_type}, "
            "op TEXT NOT NULL CHECK (op IN ('add', 'remove', 'reload')), item_id TEXT NOT NULL, "
            f"dims TEXT, features {self.blob_type}, meta TEXT, at DOUBLE PRECISION NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS {self.live_table} (item_id TEXT PRIMARY KEY)",
            f"CREATE TABLE IF NOT EXISTS {self.meta_table} (key TEXT PRIMARY KEY, value TEXT)",
        ]

    def _create(self, cur: Any) -> None:
        """Create the tables if needed and check the log's schema version (one-line error when
        another mentor wrote it)."""
        for statement in self._schema():
            cur.execute(statement)
        cur.execute(self._sql(f"SELECT value FROM {self.meta_table} WHERE key = 'schema'"))
        row = cur.fetchone()
        if row is None:
            cur.execute(self._sql(f"INSERT INTO {self.meta_table} VALUES ('schema', ?)"), (SCHEMA,))
        elif row[0] != SCHEMA:
            raise MentorError(
                f"{self.url}: catalogue log schema {row[0]}, this mentor reads {SCHEMA}; use "
                "another --store (or namespace) or the mentor version that wrote it"
            )

    @abstractmethod
    def _write(self) -> AbstractContextManager[Any]:
        """A cursor inside a write transaction that holds the store's writer lock."""

    @abstractmethod
    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """The rows of one read-only statement."""

    def add(
        self,
        ids: Sequence[str],
        features: Mapping[str, np.ndarray],
        meta: Sequence[Mapping[str, str]] | None = None,
    ) -> int:
        rows = _rows(ids, features, meta)
        now = time.time()
        try:
            with self._write() as cur:
                for item, dims, blob, info in rows:
                    cur.execute(self._sql(f"INSERT INTO {self.live_table} VALUES (?)"), (item,))
                    cur.execute(
                        self._sql(
                            f"INSERT INTO {self.log_table} (op, item_id, dims, features, meta, at) "
                            "VALUES ('add', ?, ?, ?, ?, ?)"
                        ),
                        (item, dims, blob, info, now),
                    )
                return self._last(cur)
        except self.unique_error:
            taken = self._taken(ids)
            raise DuplicateIdError(
                f"item id '{taken}' already exists; new items need new ids"
            ) from None

    def _taken(self, ids: Sequence[str]) -> str:
        for item in ids:
            sql = self._sql(f"SELECT 1 FROM {self.live_table} WHERE item_id = ?")
            if self._query(sql, (item,)):
                return item
        return ids[0]

    def remove(self, ids: Sequence[str]) -> int:
        now = time.time()
        with self._write() as cur:
            for item in ids:
                cur.execute(self._sql(f"DELETE FROM {self.live_table} WHERE item_id = ?"), (item,))
                cur.execute(
                    self._sql(
                        f"INSERT INTO {self.log_table} (op, item_id, at) VALUES ('remove', ?, ?)"
                    ),
                    (item, now),
                )
            return self._last(cur)

    def reload(self, bundle: str) -> int:
        with self._write() as cur:
            cur.execute(
                self._sql(
                    f"INSERT INTO {self.log_table} (op, item_id, at) VALUES ('reload', ?, ?)"
                ),
                (bundle, time.time()),
            )
            return self._last(cur)

    def _last(self, cur: Any) -> int:
        cur.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {self.log_table}")
        return int(cur.fetchone()[0])

    def changes_after(self, seq: int) -> list[Change]:
        sql = self._sql(
            f"SELECT seq, op, item_id, dims, features, meta FROM {self.log_table} "
            "WHERE seq > ? ORDER BY seq"
        )
        return [
            Change(
                int(s),
                op,
                item,
                unpack_features(dims, blob) if op == "add" else None,
                json.loads(info) if info else None,
            )
            for s, op, item, dims, blob, info in self._query(sql, (int(seq),))
        ]


class SqliteStore(_SqlStore):
    """The log in an SQLite file (WAL mode; several processes on one machine may share it)."""

    def __init__(self, path: Path, namespace: str = NAMESPACE) -> None:
        super().__init__(namespace)
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(self.path), timeout=30, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._write() as cur:
                self._create(cur)
        except sqlite3.Error as exc:
            raise MentorError(f"{self.path}: cannot open the catalogue store ({exc})") from None

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        self._conn.close()


class PostgresStore(_SqlStore):
    """The log in a PostgreSQL database (several machines may share it)."""

    placeholder = "%s"
    blob_type = "BYTEA"
    seq_type = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, namespace: str = NAMESPACE) -> None:
        try:
            import psycopg
        except ImportError:
            raise MentorError(
                "a postgresql:// store needs psycopg; pip install 'mentor-rec[store]'"
            ) from None
        super().__init__(namespace)
        self.unique_error = psycopg.errors.UniqueViolation
        self.url = _without_password(url)
        self._lock_key = namespace
        try:
            self._conn = psycopg.connect(url, connect_timeout=10)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise MentorError(
                f"{self.url}: cannot connect to the catalogue store ({first})"
            ) from None
        with self._write() as cur:
            self._create(cur)

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            # writers queue here, so a later seq never commits before an earlier one
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_key,))
            yield cur

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock, self._conn.transaction(), self._conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.fetchall()

    def close(self) -> None:
        self._conn.close()


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and /health)."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def default_store_path(bundle: Path) -> Path:
    """Where a bundle's SQLite log lives by default: ``<bundle>.changes.sqlite`` beside it."""
    bundle = Path(bundle).absolute()
    return bundle.parent / f"{bundle.name}.changes.sqlite"


def open_store(spec: str | None, bundle: Path, namespace: str = NAMESPACE) -> ChangeStore:
    """The store named by ``spec``: None (SQLite beside the bundle), ``memory``,
    ``sqlite:///PATH`` or a plain path, or ``postgresql://...``."""
    opener: Callable[[], ChangeStore]
    if spec is None:
        opener = lambda: SqliteStore(default_store_path(bundle), namespace)  # noqa: E731
    elif spec == "memory":
        opener = MemoryStore
    elif spec.startswith(("postgresql://", "postgres://")):
        opener = lambda: PostgresStore(spec, namespace)  # noqa: E731
    elif spec.startswith("sqlite:///"):
        opener = lambda: SqliteStore(Path(spec[len("sqlite:///") :]), namespace)  # noqa: E731
    elif "://" in spec:
        raise MentorError(
            f"--store {spec!r}: use memory, sqlite:///PATH, a file path or postgresql://..."
        )
    else:
        opener = lambda: SqliteStore(Path(spec), namespace)  # noqa: E731
    return opener()

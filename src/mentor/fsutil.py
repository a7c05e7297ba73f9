"""File-system helpers: atomic writes with the usual permissions, checksums and run-folder locks.

Every output goes through a temporary file in the destination folder and a rename, so a reader
never sees half a file. :func:`tempfile.mkstemp` creates files owner-only (0600); the finished
file gets the permissions a plain ``open(path, "w")`` would give (0666 minus the umask).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from mentor.errors import MentorError

_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """Permissions of a newly created regular file under the current umask (e.g. 0o644)."""
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def check_output_file(path: Path) -> None:
    """Refuse an output path that names a folder or sits in a folder that cannot exist."""
    if path.is_dir():
        raise MentorError(f"{path}: is a folder; give a file name, e.g. {path / 'topk.tsv'}")
    parent = path.parent
    for folder in (parent, *parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise MentorError(f"{path}: {folder} is a file, not a folder; choose another path")
            break


def make_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) or fail with a one-line error saying why."""
    if folder.exists() and not folder.is_dir():
        raise MentorError(f"{folder}: exists and is not a folder; choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MentorError(
            f"{folder}: cannot create the folder ({exc.strerror or exc}); choose another path"
        ) from None


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    check_output_file(path)
    make_folder(path.parent)
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise MentorError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MentorError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class RunLock:
    """An exclusive, non-blocking lock on a run or search folder (``<folder>/.lock``).

    A second process that tries to take it gets a one-line :class:`MentorError`. The operating
    system releases the lock when the process ends, so a crash never leaves a stale lock.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handle: int | None = None

    def __enter__(self) -> RunLock:
        import fcntl

        make_folder(self.folder)
        handle = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT, file_mode())
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            raise MentorError(
                f"{self.folder}: another mentor process is using this folder; wait for it to "
                "finish or use another folder"
            ) from None
        self._handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None


def files_digest(paths: list[Path]) -> str:
    """SHA-256 over the names and bytes of many files (e.g. an image folder), in the given
    order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode() + b"\x00")
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()

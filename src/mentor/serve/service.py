"""What one server process serves: a bundle, kept in step with the durable change log.

:class:`Service` holds the current :class:`~mentor.serve.recommender.Recommender` and swaps it
whole on reload; every request takes the current one once (:meth:`Service.current`) and answers
wholly from it. Writes go to the log first and then into memory, so an acknowledged change is
durable, and every process polls the log at most ``poll_seconds`` apart.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mentor.serve.recommender import Recommender
from mentor.serve.store import Change, ChangeStore, MemoryStore

log = logging.getLogger("mentor.serve")


class Service:
    """A recommender, its change log and the lock that orders this process's writes.

    Args:
        rec: the loaded bundle; the log is replayed over it now.
        store: the change log (default: one in memory, for a single process).
        poll_seconds: the most time between two reads of the log (another process's change
            shows here within this delay, plus the time of one read).
    """

    def __init__(
        self, rec: Recommender, store: ChangeStore | None = None, poll_seconds: float = 0.5
    ) -> None:
        self.store = store or MemoryStore()
        self.poll_seconds = poll_seconds
        self._write = threading.Lock()
        self._poll = threading.Lock()
        self._reloading = threading.Lock()
        rec.apply_changes(self.store.changes_after(0))
        self._rec = rec
        self._due = time.monotonic() + poll_seconds

    @property
    def durable(self) -> bool:
        """Whether changes outlive this process (and reach other processes)."""
        return not isinstance(self.store, MemoryStore)

    def current(self) -> Recommender:
        """The recommender for one request, caught up with the log when a poll is due (one
        thread polls; the others answer from the snapshot they have)."""
        if time.monotonic() >= self._due and self._poll.acquire(blocking=False):
            try:
                self._catch_up()
            except Exception:  # a store that is down must not stop reads
                log.exception("reading the catalogue log failed; serving the last snapshot")
                self._due = time.monotonic() + self.poll_seconds
            finally:
                self._poll.release()
        return self._rec

    def _catch_up(self) -> None:
        rec = self._rec
        changes = self.store.changes_after(rec.catalog.seq)
        reloads = [c for c in changes if c.op == "reload"]
        if reloads and not self._reloading.locked():
            # another process reloaded: load here too, off the request path; until the new
            # bundle is in, requests keep the old one (and this poll leaves the seq alone)
            threading.Thread(target=self._follow, args=(reloads[-1],), daemon=True).start()
        elif not reloads:
            rec.apply_changes(changes)
        self._due = time.monotonic() + self.poll_seconds

    def _follow(self, change: Change) -> None:
        """Load the bundle a logged reload names (the served folder again for "")."""
        with self._reloading:
            try:
                self._swap(change.item_id or None)
            except Exception:  # a bundle that does not load here: keep the old one
                log.exception("reload %d failed; still serving %s", change.seq, self._rec.path)
                with self._write:
                    self._rec.apply_changes([c for c in self.store.changes_after(0)
                                             if c.seq <= change.seq])  # fmt: skip

    def add(
        self,
        ids: Sequence[str],
        features: Mapping[str, Any],
        meta: Sequence[Mapping[str, str]] | None = None,
    ) -> Recommender:
        """Add new items (with optional display records ``meta``): checked and embedded first,
        then logged (the log refuses an id that another process added meanwhile), then applied
        here. Returns the recommender."""
        names, checked, _ = self._rec.embed_new(ids, features)
        with self._write:
            self._catch_up()
            rec = self._rec
            rec.check_new(rec.catalog, names)
            self.store.add(names, checked, meta)
            self._catch_up()
            return rec

    def remove(self, ids: Sequence[str]) -> Recommender:
        """Remove live items: logged, then applied here. Returns the recommender."""
        names = list(dict.fromkeys(str(i) for i in ids))
        with self._write:
            self._catch_up()
            rec = self._rec
            rec.check_live(rec.catalog, names)
            self.store.remove(names)
            self._catch_up()
            return rec

    def reload(self, path: str | Path | None = None) -> Recommender:
        """Load the bundle at ``path`` (default: the current bundle's folder, read again),
        replay the log over it and swap it in; requests in flight finish on the old one. The
        reload is logged, so every other process sharing the log follows within its poll delay.
        """
        with self._reloading:
            return self._swap(path, announce=True)

    def _swap(self, path: str | Path | None, announce: bool = False) -> Recommender:
        old = self._rec
        new = Recommender.load(path or old.path, index=old.index_kind)
        new.score_budget = old.score_budget
        with self._write:
            if announce:
                self.store.reload(str(path or ""))
            new.apply_changes(self.store.changes_after(0))
            self._rec = new
        log.warning(
            "reloaded %s: %s bundle %s (was %s)", new.path, new.model, new.digest[:16],
            old.digest[:16],
        )  # fmt: skip
        return new

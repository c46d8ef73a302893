"""SQLite persistence: one file, WAL mode, one transaction per change.

Objects are stored as JSON by (kind, id).  Datapath numbers come from
high-water counters that are saved in the same transaction as the objects
that use them, so a number is never handed out twice, even after a delete
(a conntrack record holding an old rule number can never match a new rule).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
from typing import Any, Iterable

from si_model import model as m
from si_model.validate import upgrade_stored

LOG = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
                                    PRIMARY KEY (kind, id));
CREATE TABLE IF NOT EXISTS counters (space TEXT PRIMARY KEY, next INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# A change: (kind, id, object or None for delete).
Change = tuple[str, str, Any]


class Store:
    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def load(self) -> tuple[m.Model, dict[str, int], dict[str, Any]]:
        """The stored model, the number counters and the small state values."""
        model = m.Model()
        for kind, body in self._db.execute("SELECT kind, body FROM objects"):
            if kind in m.KINDS:
                fields, dropped = upgrade_stored(kind, json.loads(body))
                if dropped:
                    LOG.warning("stored %s %s: dropped %s", kind, fields.get("name"),
                                ", ".join(dropped))
                model.put(kind, m.KINDS[kind](**fields))
        counters = dict(self._db.execute("SELECT space, next FROM counters"))
        state = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM state")}
        return model, counters, state

    def fresh(self) -> bool:
        """True until the first commit.  A store the user has emptied on purpose is not
        fresh, so a restart does not bring the example edge back into it."""
        row = self._db.execute("SELECT 1 FROM objects UNION ALL SELECT 1 FROM counters "
                               "UNION ALL SELECT 1 FROM state LIMIT 1").fetchone()
        return row is None

    def commit(self, changes: Iterable[Change], counters: dict[str, int],
               state: dict[str, Any] | None = None) -> None:
        """Write all changes, counters and state atomically (all or nothing)."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for kind, obj_id, obj in changes:
                    if obj is None:
                        cur.execute("DELETE FROM objects WHERE kind=? AND id=?", (kind, obj_id))
                    else:
                        cur.execute("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)",
                                    (kind, obj_id, json.dumps(m.fields_of(obj), sort_keys=True)))
                cur.executemany("INSERT OR REPLACE INTO counters VALUES (?, ?)",
                                counters.items())
                for k, v in (state or {}).items():
                    cur.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (k, json.dumps(v)))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

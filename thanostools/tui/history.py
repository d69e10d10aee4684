"""Query history, persisted as JSON in the user's data dir; starred entries are never pruned."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

DATA_DIR_ENV = "THANOS_TOOLS_DATA_DIR"
FILE_NAME = "history.json"
MAX_UNSTARRED = 1000


def data_dir() -> Path:
    """``$THANOS_TOOLS_DATA_DIR``, else the platform's user data dir for thanos-tools."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("thanos-tools"))


@dataclass
class HistoryEntry:
    query: str
    last_run_ms: int
    runs: int = 1
    starred: bool = False


class History:
    """Newest first. Every change is written at once (the file is small); writes are atomic."""

    def __init__(self, path: Path, *, max_unstarred: int = MAX_UNSTARRED) -> None:
        self.path = path
        self.max_unstarred = max_unstarred
        self.entries: list[HistoryEntry] = []
        self.load_error: str | None = None
        self._lock = threading.Lock()
        self._load()

    @classmethod
    def default(cls) -> History:
        return cls(data_dir() / FILE_NAME)

    def _load(self) -> None:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries = [HistoryEntry(str(e["query"]), int(e["last_run_ms"]), int(e.get("runs", 1)),
                                         bool(e.get("starred", False))) for e in doc["entries"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            self.load_error = f"history file {self.path} unreadable, starting empty: {exc}"
            self.entries = []
        self.entries.sort(key=lambda e: -e.last_run_ms)

    def save(self) -> None:
        with self._lock:
            doc = {"version": 1, "entries": [asdict(e) for e in self.entries]}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".history-", dir=self.path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=0)
            os.replace(tmp, self.path)

    def find(self, query: str) -> HistoryEntry | None:
        return next((e for e in self.entries if e.query == query), None)

    def add(self, query: str, now_ms: int) -> HistoryEntry:
        query = query.strip()
        entry = self.find(query)
        if entry is None:
            entry = HistoryEntry(query, now_ms, 0)
        else:
            self.entries.remove(entry)
        entry.runs += 1
        entry.last_run_ms = now_ms
        self.entries.insert(0, entry)
        self._prune()
        self.save()
        return entry

    def _prune(self) -> None:
        unstarred = [e for e in self.entries if not e.starred]
        if len(unstarred) > self.max_unstarred:
            drop = {id(e) for e in unstarred[self.max_unstarred:]}
            self.entries = [e for e in self.entries if id(e) not in drop]

    def toggle_star(self, query: str) -> bool:
        entry = self.find(query)
        if entry is None:
            return False
        entry.starred = not entry.starred
        self.save()
        return entry.starred

    def remove(self, query: str) -> None:
        self.entries = [e for e in self.entries if e.query != query]
        self.save()

    def search(self, text: str = "") -> list[HistoryEntry]:
        """Entries holding every word of ``text`` (case-insensitive); starred first, then newest."""
        words = text.lower().split()
        hits = [e for e in self.entries if all(w in e.query.lower() for w in words)]
        return sorted(hits, key=lambda e: (not e.starred, -e.last_run_ms))

    def queries(self) -> list[str]:
        return [e.query for e in self.entries]

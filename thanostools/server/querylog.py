"""``--query-log-file``: one JSON line per API query (who, what, how long, how much, how it ended)."""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any

from thanostools.core.redact import redact_value


@dataclass
class QueryLogEntry:
    endpoint: str
    client: str
    user: str = ""
    query: str = ""
    params: dict[str, str] | None = None  # time / start, end, step / match[] …
    duration_s: float = 0.0
    series: int = 0
    samples: int = 0
    status: int = 200
    error_type: str = ""
    error: str = ""


class QueryLog:
    """Appends entries to a file; :meth:`reopen` (on reload) follows log rotation."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None
        self.reopen()

    def reopen(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
            self._fh = open(self.path, "a", encoding="utf-8") if self.path else None  # noqa: SIM115

    def write(self, entry: QueryLogEntry) -> None:
        if self._fh is None:
            return
        record: dict[str, Any] = {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        record.update({k: redact_value(v) for k, v in asdict(entry).items() if v not in ("", None)})
        record["duration_s"] = round(entry.duration_s, 6)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._lock:
            if self._fh is not None:
                self._fh.write(line)
                self._fh.flush()

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

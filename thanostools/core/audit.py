"""Audit trail: one log line per action that changes a bucket (who, when, what, which blocks)."""

from __future__ import annotations

import getpass
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence

from thanostools.core.redact import redact_argv

log = logging.getLogger("thanostools.audit")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid()) if hasattr(os, "getuid") else "unknown"


def audit(action: str, blocks: Sequence[str], *, bucket: str, dry_run: bool = False,
          details: Mapping[str, object] | None = None) -> None:
    """Record one action (``upload``, ``mark-deletion``, ``delete``, ``compact`` …) on ``blocks``.

    Written at warning level so it shows at the default log level; dry runs are marked as such.
    """
    kv: dict[str, object] = {
        "audit": action,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "user": _user(),
        "command": " ".join(redact_argv([os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv)])),
        "bucket": bucket,
        "blocks": ",".join(blocks),
        "dry_run": dry_run,
    }
    kv.update(details or {})
    log.warning("bucket change%s", " (dry run)" if dry_run else "", extra={"kv": kv})

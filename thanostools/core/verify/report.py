"""What `bucket verify` found: issues with the blocks involved, details, and the safe action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Thanos issue IDs (FORMATS.md §8.9).
OVERLAPPED_BLOCKS = "overlapped_blocks"
INDEX_KNOWN_ISSUES = "index_known_issues"
DUPLICATED_COMPACTION = "duplicated_compaction"
# Our deep checks.
INDEX_INTEGRITY = "index_integrity"
CHUNK_INTEGRITY = "chunk_integrity"
META_FILES = "meta_files"
PARTIAL_UPLOADS = "partial_uploads"
MARKERS = "markers"

THANOS_CHECKS = (OVERLAPPED_BLOCKS, INDEX_KNOWN_ISSUES, DUPLICATED_COMPACTION)
DEEP_CHECKS = (INDEX_INTEGRITY, CHUNK_INTEGRITY, META_FILES, PARTIAL_UPLOADS, MARKERS)
ALL_CHECKS = THANOS_CHECKS + DEEP_CHECKS


@dataclass
class Issue:
    """One finding. ``id`` is the check that found it, ``kind`` what exactly is wrong."""

    id: str
    kind: str
    blocks: list[str]
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    repairable: bool = False
    action: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "blocks": list(self.blocks), "message": self.message,
                "repairable": self.repairable, "action": self.action, "details": self.details}


@dataclass
class VerifyReport:
    bucket: str
    checks: list[str]
    checked_blocks: int = 0
    issues: list[Issue] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.issues

    def add(self, issue: Issue) -> None:
        self.issues.append(issue)

    def by_check(self, check: str) -> list[Issue]:
        return [i for i in self.issues if i.id == check]

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "checks": list(self.checks), "checked_blocks": self.checked_blocks,
                "clean": self.clean, "issues": [i.to_dict() for i in self.issues]}

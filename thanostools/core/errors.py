"""One error tree for the whole tool; front ends map it to exit codes or statuses once."""

from __future__ import annotations


class ThanosToolsError(Exception):
    """Base class: every error a user may see. The message is one line, says what and why."""

    exit_code = 1


class ConfigError(ThanosToolsError):
    """Bad flags, bad config files, bad bucket URLs."""

    exit_code = 2


class SourceError(ThanosToolsError):
    """A bucket or remote endpoint could not be reached or answered badly."""


class BucketMissingError(SourceError):
    """The bucket itself does not exist (or is not a bucket): a mistake in the configuration, not a passing failure
    worth retrying."""


class NotFoundError(SourceError):
    """An object, block or file that should exist does not."""


class BlockGoneError(NotFoundError):
    """A block that was listed is no longer there (deleted by a compactor or an operator since the listing)."""

    def __init__(self, block: str, why: str) -> None:
        super().__init__(f"block {block} is gone from the bucket since it was listed ({why})")
        self.block = block


class UnsupportedError(ThanosToolsError):
    """Input that is valid upstream but that this tool does not handle (yet)."""


class FormatError(ThanosToolsError):
    """Bytes that do not follow the format."""


class CorruptBlockError(FormatError):
    """A block file is damaged. Carries where: block, file (section) and byte offset."""

    def __init__(
        self,
        message: str,
        *,
        block: str | None = None,
        file: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = message
        self.block = block
        self.file = file
        self.offset = offset
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.block:
            where.append(f"block {self.block}")
        if self.file:
            where.append(f"file {self.file}")
        if self.offset is not None:
            where.append(f"offset {self.offset}")
        return f"corrupt block ({', '.join(where)}): {self.reason}" if where else f"corrupt block: {self.reason}"

    def located(
        self, *, block: str | None = None, file: str | None = None, offset: int | None = None
    ) -> CorruptBlockError:
        """Fill in location details that the raising layer did not know."""
        self.block = self.block or block
        self.file = self.file or file
        if self.offset is None:
            self.offset = offset
        self.args = (self._render(),)
        return self


class QueryError(ThanosToolsError):
    """A PromQL query failed."""


class ParseError(QueryError):
    """PromQL (or a selector) did not parse. `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int | None = None, line: int | None = None,
                 column: int | None = None) -> None:
        self.position = position
        self.line = line
        self.column = column
        self.reason = message
        prefix = f"{line}:{column}: " if line is not None and column is not None else ""
        super().__init__(f"parse error: {prefix}{message}")


class EvalError(QueryError):
    """Evaluation failed (type errors at run time, many-to-many matching, limits)."""


class QueryTimeoutError(QueryError):
    """The query ran past its timeout."""


class HaltError(ThanosToolsError):
    """Something needs a human before work can go on (e.g. overlapping blocks)."""


class VerifyIssuesFound(ThanosToolsError):
    """`bucket verify` found issues."""

    exit_code = 3

"""Files and work directories on the local file system.

Everything we write for others to read (bucket objects, blocks, downloads) gets the mode a plain
``open()``/``mkdir`` would give under the process umask (0666/0777 & ~umask, as Prometheus does), even
when it is made through ``mkstemp``/``mkdtemp`` (always 0600/0700) or hard-linked from a work file.

Work directories live under one known root (``--work-dir``/``--tmp-dir`` or ``<cache dir>/work``), are
named ``thanos-tools-<kind>-<pid>-<random>`` and hold a lock (``flock``) for the life of the process
that made them. Before a new one is made, the directories under the same root whose owner is gone are
removed, together with a list of the block uploads they had started (``uploads``), so that the caller
can remove those uploads' remains from the bucket.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import platformdirs

WORK_PREFIX = "thanos-tools-"
LOCK_FILE = ".lock"
UPLOADS_FILE = ".uploads"


def umask() -> int:
    """The process umask, read without changing it where /proc allows (changing it races other threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    return 0o666 & ~umask()


def dir_mode() -> int:
    return 0o777 & ~umask()


def atomic_fill(path: str, fill: Callable[[str], object]) -> None:
    """Make ``path`` atomically: ``fill`` writes a temporary file next to it (same file system), which then
    gets the umask's file mode and is renamed onto ``path``; readers see all of it or nothing."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str, data: bytes, *, fsync: bool = False) -> None:
    """Write ``path`` atomically (see ``atomic_fill``)."""

    def fill(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())

    atomic_fill(path, fill)


def atomic_copy(src: str, path: str, *, link: bool = False) -> None:
    """Copy ``src`` to ``path`` atomically. ``link``: ``src`` is the caller's own file, never changed again,
    so on the same file system it is hard-linked instead (its mode is then set for both names)."""

    def fill(tmp: str) -> None:
        if not (link and _replace_with_link(src, tmp)):
            shutil.copyfile(src, tmp)  # kernel-side copy (sendfile / copy_file_range) where available

    atomic_fill(path, fill)


def _replace_with_link(src: str, tmp: str) -> bool:
    """Make ``tmp`` a hard link to ``src``; False when the file system cannot (then nothing changed)."""
    staged = f"{tmp}.link"
    try:
        os.link(src, staged)
    except OSError:
        return False
    os.replace(staged, tmp)
    return True


def temp_dir(prefix: str, parent: str) -> str:
    """``mkdtemp`` with the mode of a plain ``mkdir``: for directories renamed into an output later."""
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(path, dir_mode())
    return path


# --- work directories --------------------------------------------------------------------------------


CACHE_DIR_ENV = "THANOS_TOOLS_CACHE_DIR"


def default_cache_dir() -> str:
    """Where the range cache and the work directories live: $THANOS_TOOLS_CACHE_DIR or the user's cache dir."""
    return os.environ.get(CACHE_DIR_ENV) or platformdirs.user_cache_dir("thanos-tools")


def default_work_root() -> str:
    return os.path.join(default_cache_dir(), "work")


@dataclass(frozen=True)
class AbandonedUpload:
    """A block upload started by a process that is gone: ``bucket`` is the bucket's identity."""

    bucket: str
    ulid: str


@dataclass(frozen=True)
class WorkDir:
    path: str

    def note_upload(self, bucket: str, ulid: str) -> None:
        """Record, before it starts, an upload of block ``ulid`` to the bucket with identity ``bucket``."""
        with open(os.path.join(self.path, UPLOADS_FILE), "a", encoding="utf-8") as fh:
            fh.write(f"{bucket} {ulid}\n")
            fh.flush()
            os.fsync(fh.fileno())


def _pid_of(name: str) -> int | None:
    parts = name[len(WORK_PREFIX):].split("-")
    return int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_uploads(path: str) -> list[AbandonedUpload]:
    try:
        with open(os.path.join(path, UPLOADS_FILE), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return [AbandonedUpload(*line.split(" ", 1)) for line in lines if " " in line]


def _owner_gone(path: str, pid: int) -> int | None:
    """An open, locked descriptor of the lock file when its owner is gone; None while it is alive."""
    try:
        fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR)
    except FileNotFoundError:
        # Made but not locked yet, or its owner died in between: the PID tells.
        return -1 if not _pid_alive(pid) else None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


def remove_stale_work_dirs(root: str) -> list[AbandonedUpload]:
    """Remove the work directories under ``root`` whose process is gone; the uploads they had started."""
    abandoned: list[AbandonedUpload] = []
    try:
        names = [n for n in os.listdir(root) if n.startswith(WORK_PREFIX)]
    except FileNotFoundError:
        return abandoned
    for name in names:
        pid = _pid_of(name)
        path = os.path.join(root, name)
        if pid is None or pid == os.getpid() or not os.path.isdir(path):
            continue
        fd = _owner_gone(path, pid)
        if fd is None:
            continue
        try:
            abandoned += _read_uploads(path)
            shutil.rmtree(path, ignore_errors=True)
        finally:
            if fd >= 0:
                os.close(fd)
    return abandoned


@contextlib.contextmanager
def work_dir(kind: str, parent: str | None = None) -> Iterator[WorkDir]:
    """A fresh, locked work directory under ``parent`` (default ``default_work_root()``), removed on exit."""
    root = parent or default_work_root()
    os.makedirs(root, exist_ok=True)
    path = tempfile.mkdtemp(prefix=f"{WORK_PREFIX}{kind}-{os.getpid()}-", dir=root)
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield WorkDir(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
        os.close(fd)


__all__ = [
    "AbandonedUpload",
    "WorkDir",
    "atomic_copy",
    "atomic_fill",
    "atomic_write",
    "default_work_root",
    "dir_mode",
    "file_mode",
    "remove_stale_work_dirs",
    "temp_dir",
    "umask",
    "work_dir",
]

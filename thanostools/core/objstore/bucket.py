"""Object storage access over fsspec, with every failure turned into a one-line SourceError.

Keys are ``/``-separated and relative to the bucket root (``<ULID>/meta.json``). Local buckets are plain
directories; ``local_path`` gives readers a real path they can mmap.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

import fsspec

from thanostools.core.errors import BucketMissingError, ConfigError, NotFoundError, SourceError, ThanosToolsError
from thanostools.core.localfs import atomic_copy, atomic_fill, atomic_write
from thanostools.core.objstore.config import (
    BucketSpec,
    load_objstore_file,
    parse_bucket_url,
    parse_objstore_yaml,
)
from thanostools.core.ulid import is_ulid

BUCKET_ENV = "THANOS_TOOLS_BUCKET"
DEFAULT_BUCKET = "./data"
_NO_BUCKET_HINT = f"no bucket given: point at one with --bucket DIR or ${BUCKET_ENV}"

log = logging.getLogger(__name__)

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED_CODES = frozenset({
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "AllAccessDisabled", "AccountProblem",
})
_UNREACHABLE_NAMES = frozenset({
    "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
    "ClientConnectorError", "ServerDisconnectedError", "ServerTimeoutError", "FSTimeoutError",
    "TimeoutError", "ConnectionRefusedError", "ConnectionResetError", "SSLError", "ProxyConnectionError",
})
_CREDENTIAL_NAMES = frozenset({"NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError"})


def open_bucket(
    url: str | None = None,
    *,
    objstore_config_file: str | None = None,
    objstore_config: str | None = None,
) -> Bucket:
    """Open a bucket; precedence: config content > config file > url > $THANOS_TOOLS_BUCKET > ./data."""
    if objstore_config:
        spec = parse_objstore_yaml(objstore_config)
    elif objstore_config_file:
        spec = load_objstore_file(objstore_config_file)
    else:
        given = url or os.environ.get(BUCKET_ENV)
        bucket = Bucket(parse_bucket_url(given or DEFAULT_BUCKET))
        bucket.is_default = not given
        return bucket
    return Bucket(spec)


class Bucket:
    def __init__(self, spec: BucketSpec) -> None:
        self.spec = spec
        self.is_local = spec.protocol == "file"
        self.is_default = False  # opened at DEFAULT_BUCKET because no bucket was named
        self._root = spec.root if self.is_local else spec.root.rstrip("/")
        try:
            self._fs: Any = fsspec.filesystem(spec.protocol, **spec.storage_options)
        except ImportError as exc:
            raise ConfigError(f"bucket {spec.url}: missing package: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"bucket {spec.url}: {_first_line(exc)}") from None
        if spec.protocol == "s3":
            # s3fs would retry timeouts on top of botocore's own retries; one layer is enough.
            self._fs.retries = 1

    def __repr__(self) -> str:
        return f"Bucket({self.url!r})"

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def protocol(self) -> str:
        return self.spec.protocol

    @property
    def identity(self) -> str:
        """A stable short id of this bucket location (protocol, endpoint, root); used for cache keys."""
        text = f"{self.spec.protocol}|{self.spec.endpoint or ''}|{self._root}"
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # --- paths ------------------------------------------------------------------------------------

    def _path(self, key: str) -> str:
        key = key.strip("/")
        if key and any(part in ("", ".", "..") for part in key.split("/")):
            raise ValueError(f"invalid object key {key!r}")
        if not key:
            return self._root
        if self.is_local:
            return os.path.join(self._root, *key.split("/"))
        return f"{self._root}/{key}"

    def _key_of(self, path: str) -> str:
        """Key of a full filesystem path returned by a listing."""
        path = self._fs._strip_protocol(path) if not self.is_local else path
        root = self._root.rstrip("/")
        if self.is_local:
            rel = os.path.relpath(path, root)
            return rel.replace(os.sep, "/")
        return path[len(root) + 1:] if path.startswith(root + "/") else path.lstrip("/")

    def local_path(self, key: str) -> str | None:
        """Real filesystem path of ``key`` for local buckets (readers may mmap it); None for remote ones."""
        return self._path(key) if self.is_local else None

    def _where(self, key: str | None) -> str:
        if not key:
            return self.url
        return f"{self.url.rstrip('/')}/{key}"

    # --- error translation --------------------------------------------------------------------------

    def _root_missing(self) -> bool:
        return self.is_local and not os.path.isdir(self._root)

    def _root_missing_error(self) -> SourceError:
        if self.is_local and os.path.isfile(self._root):
            parent = os.path.dirname(os.path.abspath(self._root))
            if os.path.isfile(os.path.join(parent, "meta.json")):
                parent = os.path.dirname(parent)
            return BucketMissingError(f"bucket {self.url} is a file; a bucket is the directory that holds block "
                               f"directories (--bucket {parent}?)")
        hint = f" ({_NO_BUCKET_HINT})" if self.is_default else ""
        return BucketMissingError(f"bucket directory {self.url} does not exist{hint}")

    def _check_root(self) -> None:
        if self._root_missing():
            raise self._root_missing_error()
        if self.is_local and os.path.isfile(os.path.join(self._root, "meta.json")):
            parent = os.path.dirname(os.path.abspath(self._root))
            raise BucketMissingError(f"{self.url} is a block directory, not a bucket: use the directory that holds it "
                              f"(--bucket {parent})")

    def _bucket_missing(self) -> bool:
        if self.protocol != "s3":
            return self._root_missing()
        name = self._root.split("/", 1)[0]
        try:
            self._fs.call_s3("head_bucket", Bucket=name)
        except Exception as exc:
            missing = _error_code(exc) in ("404", "NoSuchBucket", "NotFound")
            return missing or isinstance(exc, FileNotFoundError)
        return False

    def _raise(self, exc: BaseException, action: str, key: str | None) -> NoReturn:
        raise self._translate(exc, action, key) from None

    def _translate(self, exc: BaseException, action: str, key: str | None) -> ThanosToolsError:
        if isinstance(exc, ThanosToolsError):
            return exc
        code = _error_code(exc)
        where = self._where(key)
        names = _chain_names(exc)
        endpoint = f" (endpoint {self.spec.endpoint})" if self.spec.endpoint else ""
        if code == "NoSuchBucket":
            return BucketMissingError(f"cannot {action} {where}: bucket {self.url} does not exist{endpoint}")
        if code in _NOT_FOUND_CODES or isinstance(exc, FileNotFoundError):
            if self._root_missing():
                return self._root_missing_error()
            if self.is_local and _is_dangling_link(self._path(key or "")):
                return NotFoundError(f"cannot {action} {where}: dangling symlink")
            if self.protocol == "s3" and code != "NoSuchKey" and self._bucket_missing():
                return BucketMissingError(f"cannot {action} {where}: bucket {self.url} does not exist{endpoint}")
            return NotFoundError(f"cannot {action} {where}: no such object")
        if isinstance(exc, IsADirectoryError):
            return NotFoundError(f"cannot {action} {where}: is a directory, not an object")
        if code in _DENIED_CODES or isinstance(exc, PermissionError):
            return SourceError(f"cannot {action} {where}: access denied{endpoint}: {_first_line(exc)}")
        if names & _CREDENTIAL_NAMES:
            return SourceError(
                f"cannot {action} {where}: no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                "or access_key/secret_key in the objstore config)"
            )
        if names & _UNREACHABLE_NAMES:
            return SourceError(f"cannot {action} {where}: endpoint unreachable{endpoint}: {_first_line(exc)}")
        return SourceError(f"cannot {action} {where}: {type(exc).__name__}: {_first_line(exc)}")

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            self._raise(exc, action, key)

    # --- listing ------------------------------------------------------------------------------------

    def list_dir(self, prefix: str = "") -> list[str]:
        """Names of the immediate children (objects and sub-prefixes) under ``prefix``, sorted."""
        path = self._path(prefix)
        if self.is_local:
            self._check_root()
            try:
                with os.scandir(path) as it:
                    return sorted(e.name for e in it)
            except (FileNotFoundError, NotADirectoryError):
                return []
            except OSError as exc:
                self._raise(exc, "list", prefix)
        try:
            entries = self._fs.ls(path, detail=False)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                self._raise(exc, "list", prefix)
            return []
        except Exception as exc:
            self._raise(exc, "list", prefix)
        base = path.rstrip("/")
        names = {self._fs._strip_protocol(e).rstrip("/")[len(base) + 1:] for e in entries}
        return sorted(n for n in names if n and "/" not in n)

    def list_blocks(self) -> list[str]:
        """Top-level names that are ULIDs, sorted (anything else at the top level is not a block)."""
        return [name for name in self.list_dir("") if is_ulid(name)]

    def list_prefix(self, prefix: str = "") -> dict[str, int]:
        """Every object below the directory ``prefix``, recursively: key -> size in bytes."""
        path = self._path(prefix)
        if self.is_local:
            self._check_root()
            return self._walk_local(path)
        try:
            found = self._fs.find(path, detail=True, withdirs=False)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                self._raise(exc, "list", prefix)
            return {}
        except Exception as exc:
            self._raise(exc, "list", prefix)
        out: dict[str, int] = {}
        for name, info in found.items():
            if info.get("type") == "directory" or name.endswith("/"):
                continue
            out[self._key_of(name)] = int(info.get("size") or 0)
        return dict(sorted(out.items()))

    def _walk_local(self, path: str) -> dict[str, int]:
        """Files below ``path``. A dangling symlink is no object and is left out (one bad link must not hide
        the rest of the bucket; readers that need the file report it missing); a file removed while listing
        is simply gone."""
        out: dict[str, int] = {}
        if os.path.isfile(path):
            return {self._key_of(path): os.path.getsize(path)}
        if not os.path.isdir(path):
            return {}
        try:
            for dirpath, _dirs, files in os.walk(path, onerror=_raise_unless_gone):
                for name in files:
                    full = os.path.join(dirpath, name)
                    try:
                        out[self._key_of(full)] = os.path.getsize(full)
                    except FileNotFoundError:
                        if _is_dangling_link(full):
                            log.debug("skipping dangling symlink",
                                        extra={"kv": {"bucket": self.url, "key": self._key_of(full)}})
        except OSError as exc:
            self._raise(exc, "list", self._key_of(path))
        return dict(sorted(out.items()))

    def has_entry(self, key: str) -> bool:
        """Whether anything sits at ``key``: an object, a directory (prefix), or a dangling symlink.

        Tells "nothing there" apart from "something there that is not a readable object"."""
        path = self._path(key)
        if self.is_local:
            return os.path.lexists(path)
        found = False
        with self._errors("check", key):
            found = bool(self._fs.exists(path))
        return found

    # --- reading ------------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        path = self._path(key)
        if self.is_local:
            return os.path.exists(path)  # also False when the bucket directory itself is missing
        found = False
        with self._errors("check", key):
            found = bool(self._fs.exists(path))
        return found

    def size(self, key: str) -> int:
        path = self._path(key)
        if self.is_local:
            self._check_root()
        with self._errors("stat", key):
            info = self._fs.info(path)
        if info.get("type") == "directory":
            raise NotFoundError(f"cannot stat {self._where(key)}: is a directory, not an object")
        return int(info.get("size") or 0)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        if self.is_local:
            self._check_root()
        kwargs: dict[str, Any] = {"max_concurrency": 1} if self.protocol == "s3" else {}
        with self._errors("read", key):
            data = self._fs.cat_file(path, **kwargs)
        return bytes(data)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes from offset ``start`` (fewer if the object ends earlier)."""
        return self.get_ranges([(key, start, start + length)])[0]

    def get_ranges(self, requests: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """Batched range reads of ``(key, start, end)`` (end exclusive), concurrent on remote stores."""
        for key, start, end in requests:
            if start < 0 or end < start:
                raise ValueError(f"invalid byte range [{start}, {end}) for {key}")
        if self.is_local and requests:
            self._check_root()
        todo = [i for i, (_, start, end) in enumerate(requests) if end > start]
        out: list[bytes] = [b""] * len(requests)
        if not todo:
            return out
        paths = [self._path(requests[i][0]) for i in todo]
        with self._errors("read", requests[todo[0]][0]):
            results = self._fs.cat_ranges(
                paths, [requests[i][1] for i in todo], [requests[i][2] for i in todo], on_error="return"
            )
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, BaseException):
                if _error_code(result) == "InvalidRange":
                    continue  # the range starts past the end of the object: like a short local read
                self._raise(result, "read", requests[i][0])
            out[i] = bytes(result)
        return out

    def get_file(self, key: str, local_path: str) -> None:
        """Download ``key`` to ``local_path`` (written to a temp file first, then renamed)."""
        path = self._path(key)
        if self.is_local:
            self._check_root()

        def fetch(tmp: str) -> None:
            with self._errors("read", key):
                self._fs.get_file(path, tmp)

        atomic_fill(local_path, fetch)

    # --- writing ------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.is_local:
            with self._errors("write", key):
                atomic_write(path, data)
            return
        with self._errors("write", key):
            self._fs.pipe_file(path, bytes(data))

    def put_file(self, local_path: str, key: str, *, private: bool = False) -> None:
        """Upload a local file. ``private``: the file is the caller's own temporary file, never modified
        again, so a local bucket on the same file system may hard-link it instead of copying the bytes."""
        if not os.path.isfile(local_path):
            raise NotFoundError(f"cannot upload {local_path}: no such file")
        path = self._path(key)
        if self.is_local:
            with self._errors("write", key):
                atomic_copy(local_path, path, link=private)
            return
        with self._errors("write", key):
            if self.protocol == "memory":
                # fsspec's memory put_file leaves pseudo-directories behind that outlive their files.
                with open(local_path, "rb") as f:
                    self._fs.pipe_file(path, f.read())
            else:
                self._fs.put_file(local_path, path)

    def delete(self, key: str) -> None:
        """Delete one object; deleting a missing object is not an error.

        A key ending in ``/`` names a directory-marker object; on local buckets the directory is removed
        when empty. Local buckets also drop directories left empty, as object stores have none.
        """
        if self.is_local:
            self._delete_local(key)
            return
        path = self._path(key) + ("/" if key.endswith("/") else "")
        try:
            self._fs.rm_file(path)
        except FileNotFoundError as exc:
            if _error_code(exc) == "NoSuchBucket":
                self._raise(exc, "delete", key)
        except Exception as exc:
            self._raise(exc, "delete", key)

    def _delete_local(self, key: str) -> None:
        path = self._path(key)
        try:
            if key.endswith("/"):
                os.rmdir(path)
            else:
                os.remove(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            if not key.endswith("/"):
                self._raise(exc, "delete", key)
            return
        parent = os.path.dirname(path)
        while os.path.abspath(parent) != os.path.abspath(self._root) and parent.startswith(self._root):
            try:
                os.rmdir(parent)
            except OSError:
                break
            parent = os.path.dirname(parent)


def _raise_unless_gone(exc: OSError) -> None:
    if not isinstance(exc, FileNotFoundError):  # a directory removed while listing is simply gone
        raise exc


def _is_dangling_link(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _chain_names(exc: BaseException) -> set[str]:
    names: set[str] = set()
    for e in _chain(exc):
        names.update(cls.__name__ for cls in type(e).__mro__)
    return names


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code (``NoSuchKey``, ``AccessDenied``, ``404``...) anywhere in the exception chain."""
    for e in _chain(exc):
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            if code:
                return str(code)
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


__all__ = ["BUCKET_ENV", "DEFAULT_BUCKET", "Bucket", "BucketSpec", "open_bucket"]

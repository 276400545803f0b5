"""One small interface over `s3://` and `file://` URIs (a bare path counts as a local file), so that every
job runs the same against S3 on AWS and against a folder on a laptop. Locations are split by
`aurax_contracts.layout.parse_location`: S3 keys and local names are taken literally (`#`, `?`, `:`).

Local writes are atomic (temporary file, fsync, rename); S3 PUTs are atomic by nature.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from aurax_contracts.layout import LocationError, parse_location


class StorageError(OSError):
    """A URI could not be read or written; the message says which and why."""


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    bucket: str  # "" for files
    key: str  # S3 key, or absolute local path

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else Path(self.key).as_uri()


def parse_uri(uri: str) -> Location:
    """An S3 location, or a local one with its path made absolute (`~` expanded in a plain path)."""
    try:
        location = parse_location(uri)
    except LocationError as exc:
        raise StorageError(str(exc)) from None
    if location.scheme == "s3":
        return Location("s3", location.bucket, location.key)
    # A file URI's path is absolute, so only a plain path can start with `~`.
    return Location("file", "", str(Path(location.key).expanduser().resolve()))


@lru_cache(maxsize=1)
def _s3() -> Any:
    import boto3

    return boto3.client("s3")


def reset_clients() -> None:
    """Forget cached clients (tests switch moto contexts)."""
    _s3.cache_clear()


def _s3_error(exc: Exception, uri: str, verb: str) -> StorageError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
    return StorageError(f"cannot {verb} {uri}: {code}; check the URI and the job role's S3 permissions")


def read_bytes(uri: str) -> bytes:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        try:
            return Path(loc.key).read_bytes()
        except OSError as exc:
            raise StorageError(f"cannot read {uri}: {exc.strerror}") from exc
    try:
        return _s3().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
    except Exception as exc:
        raise _s3_error(exc, uri, "read") from exc


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes, content_type: str = "application/octet-stream") -> None:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        path = Path(loc.key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    try:
        _s3().put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type)
    except Exception as exc:
        raise _s3_error(exc, uri, "write") from exc


def write_text(uri: str, text: str, content_type: str = "text/plain; charset=utf-8") -> None:
    write_bytes(uri, text.encode("utf-8"), content_type)


def upload_file(path: Path, uri: str, progress: Callable[[int], None] | None = None) -> None:
    """Copy a local file to `uri` (multipart for large files on S3). `progress(n)` is called as bytes go out
    (from boto3's transfer threads), so a long upload can report that it moves."""
    loc = parse_uri(uri)
    if loc.scheme == "file":
        data = Path(path).read_bytes()
        write_bytes(uri, data)
        if progress is not None:
            progress(len(data))
        return
    try:
        _s3().upload_file(str(path), loc.bucket, loc.key, Callback=progress)
    except Exception as exc:
        raise _s3_error(exc, uri, "upload to") from exc


def download_file(uri: str, path: Path) -> None:
    loc = parse_uri(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    if loc.scheme == "file":
        path.write_bytes(read_bytes(uri))
        return
    try:
        _s3().download_file(loc.bucket, loc.key, str(path))
    except Exception as exc:
        raise _s3_error(exc, uri, "download") from exc


def exists(uri: str) -> bool:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        return Path(loc.key).is_file()
    try:
        _s3().head_object(Bucket=loc.bucket, Key=loc.key)
        return True
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise _s3_error(exc, uri, "look up") from exc


def list_uris(prefix_uri: str) -> list[str]:
    """Every object (file) under a prefix (folder), sorted by name."""
    loc = parse_uri(prefix_uri)
    if loc.scheme == "file":
        root = Path(loc.key)
        if not root.is_dir():
            return []
        return sorted(p.as_uri() for p in root.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    prefix = loc.key.rstrip("/") + "/"
    uris: list[str] = []
    try:
        for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix):
            uris.extend(f"s3://{loc.bucket}/{item['Key']}" for item in page.get("Contents", []))
    except Exception as exc:
        raise _s3_error(exc, prefix_uri, "list") from exc
    return sorted(uris)


def delete(uri: str) -> None:
    loc = parse_uri(uri)
    if loc.scheme == "file":
        Path(loc.key).unlink(missing_ok=True)
        return
    try:
        _s3().delete_object(Bucket=loc.bucket, Key=loc.key)
    except Exception as exc:
        raise _s3_error(exc, uri, "delete") from exc

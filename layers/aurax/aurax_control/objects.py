"""S3 access by `s3://bucket/key` URI (the run layout's addresses)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from aurax_contracts.layout import LocationError, parse_location

from .aws import client

_MISSING = {"404", "NoSuchKey", "NotFound"}


class ObjectError(OSError):
    """An S3 object could not be read or written; the message says which and why."""


def split(uri: str) -> tuple[str, str]:
    """(bucket, key) of `s3://BUCKET/KEY`, the key taken literally (`#` and `?` are part of it)."""
    try:
        location = parse_location(uri)
    except LocationError as exc:
        raise ObjectError(f"{exc}; the control plane needs s3://BUCKET/KEY") from None
    if location.scheme != "s3":
        raise ObjectError(f"{uri!r} is not an S3 URI; the control plane needs s3://BUCKET/KEY")
    return location.bucket, location.key


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def read_bytes(uri: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    bucket, key = split(uri)
    try:
        return client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if _code(exc) in _MISSING:
            return None
        raise ObjectError(f"cannot read {uri}: {_code(exc)}; check the function role's s3:GetObject") from exc


def read_text(uri: str) -> str | None:
    data = read_bytes(uri)
    return None if data is None else data.decode("utf-8")


def iter_lines(bucket: str, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Stream an object's lines without holding the whole object (a chunk may hold 100,000 records)."""
    body = client("s3").get_object(Bucket=bucket, Key=key)["Body"]
    try:
        yield from body.iter_lines(chunk_size=chunk_size, keepends=False)
    finally:
        body.close()


def write(uri: str, data: bytes | str, content_type: str = "application/json") -> None:
    bucket, key = split(uri)
    body = data.encode("utf-8") if isinstance(data, str) else data
    client("s3").put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)


def delete(uri: str) -> None:
    bucket, key = split(uri)
    client("s3").delete_object(Bucket=bucket, Key=key)


def head(uri: str) -> dict[str, Any] | None:
    bucket, key = split(uri)
    try:
        return client("s3").head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _code(exc) in _MISSING:
            return None
        raise ObjectError(f"cannot stat {uri}: {_code(exc)}") from exc


def copy(source_uri: str, target_uri: str) -> None:
    """Server-side copy; the managed transfer switches to multipart copy above 5 GB."""
    src_bucket, src_key = split(source_uri)
    dst_bucket, dst_key = split(target_uri)
    client("s3").copy({"Bucket": src_bucket, "Key": src_key}, dst_bucket, dst_key)


@dataclass(frozen=True)
class PrefixUsage:
    objects: int
    bytes: int


def usage(prefix_uri: str) -> PrefixUsage:
    """Object count and total bytes under a prefix (for the storage estimate)."""
    bucket, prefix = split(prefix_uri)
    count = total = 0
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        for item in page.get("Contents", []):
            count += 1
            total += int(item["Size"])
    return PrefixUsage(count, total)


def list_keys(prefix_uri: str) -> list[str]:
    bucket, prefix = split(prefix_uri)
    keys: list[str] = []
    for page in client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/"):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys

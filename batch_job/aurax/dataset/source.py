"""Where MagnaTagATune comes from: the MTAT web site, an `s3://` prefix or a local folder.

Each holds `annotations_final.csv` and the audio as either the split zip `mp3.zip.001`-`.003` or the
already-extracted folders `0`-`9`, `a`-`f`. Downloads from the web site land in a local work folder and, when
a cache URI is given (an S3 prefix on AWS), are copied there once complete, with a sha256 beside each part,
so that a later run (a new Batch instance) never downloads from the site again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from aurax_contracts.config import MTAT_BASE_URL
from aurax_contracts.layout import join

from .. import storage
from ..errors import InputError
from . import stopping
from .annotations import Annotations, parse_annotations
from .download import DEFAULT_RETRY, DownloadError, RetryPolicy, download
from .parts import ConcatenatedFile
from .stopping import StopCheck

log = logging.getLogger(__name__)

ANNOTATIONS_NAME = "annotations_final.csv"
PART_NAMES = ("mp3.zip.001", "mp3.zip.002", "mp3.zip.003")
#: Sizes of the published parts (bytes); the site publishes no checksums, the zip's CRC-32s check content.
MTAT_PART_SIZES = {"mp3.zip.001": 1_100_000_000, "mp3.zip.002": 1_100_000_000, "mp3.zip.003": 772_769_864}
#: Where `aurax start` and `aurax dataset plan` keep a downloaded annotations file (default ~/.cache/aurax).
CACHE_DIR_ENV = "AURAX_CACHE_DIR"
#: A laptop asking the MTAT site for 20 MB: a few quick tries, then a clear error with the offline route.
LAPTOP_RETRY = RetryPolicy(attempts=3, base_delay_s=1.0, max_delay_s=4.0, connect_timeout_s=10.0,
                           read_timeout_s=30.0)


class AudioStore(Protocol):
    description: str

    def read(self, mp3_path: str) -> bytes | None:
        """The mp3's bytes, or None when the source has no such file. May raise on corrupt data."""
        ...

    def close(self) -> None: ...


def user_cache_dir() -> Path:
    """`$AURAX_CACHE_DIR`, else `$XDG_CACHE_HOME/aurax`, else `~/.cache/aurax`."""
    if configured := os.environ.get(CACHE_DIR_ENV):
        return Path(configured)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aurax"


def annotations_location(location: str) -> str:
    """The annotations file that `location` names: itself when it names a file, else `annotations_final.csv`
    in that folder, S3 prefix or web folder (a location ending in "/", or a local directory)."""
    is_local = "://" not in location or location.startswith("file://")
    if location.endswith("/") or (is_local and Path(storage.parse_uri(location).key).is_dir()):
        return join(location, ANNOTATIONS_NAME)
    if location.startswith(("s3://", "http://", "https://")) and not location.lower().endswith((".csv", ".tsv")):
        return join(location, ANNOTATIONS_NAME)  # a prefix or folder written without the trailing "/"
    return location


def read_annotations_file(location: str, cache_dir: Path | None = None,
                          retry: RetryPolicy | None = None) -> tuple[bytes, str]:
    """The bytes of the annotations file at `location` (see `annotations_location`) and a description of where
    they came from. A web file is downloaded once into `cache_dir` (default `user_cache_dir()`) and read from
    there afterwards, so later commands work offline. Raises `InputError` with the offline route when the file
    cannot be reached."""
    uri = annotations_location(location)
    if not uri.startswith(("http://", "https://")):
        try:
            return storage.read_bytes(uri), uri
        except storage.StorageError as exc:
            raise InputError(f"cannot read the annotations at {uri} ({exc}); pass --annotations with the path or "
                             f"s3:// URI of MagnaTagATune's {ANNOTATIONS_NAME}") from exc
    cached = _web_copy(uri, cache_dir)
    if cached.is_file():
        return cached.read_bytes(), f"{uri} (cached copy {cached})"
    try:
        download(uri, cached, None, retry or LAPTOP_RETRY)
    except DownloadError as exc:
        raise InputError(
            f"cannot download the annotations ({exc}). To work offline: download it once where the site is reachable "
            f"(`curl -fLo {ANNOTATIONS_NAME} {uri}`) and pass --annotations ./{ANNOTATIONS_NAME}, or give an "
            "s3:// copy") from exc
    return cached.read_bytes(), f"{uri} (downloaded to {cached})"


def load_annotations(location: str, cache_dir: Path | None = None,
                     retry: RetryPolicy | None = None) -> tuple[Annotations, str]:
    """`read_annotations_file`, parsed. A web copy that does not parse (an error page saved in its place) is
    removed from the cache so that the next try downloads it again."""
    data, where = read_annotations_file(location, cache_dir, retry)
    try:
        return parse_annotations(data, where), where
    except InputError:
        uri = annotations_location(location)
        if uri.startswith(("http://", "https://")):
            _web_copy(uri, cache_dir).unlink(missing_ok=True)
        raise


def _web_copy(uri: str, cache_dir: Path | None) -> Path:
    return (cache_dir or user_cache_dir()) / "mtat" / hashlib.sha256(uri.encode()).hexdigest()[:12] / ANNOTATIONS_NAME


class ZipAudioStore:
    """mp3s read straight out of the split zip."""

    def __init__(self, parts: list[Path]) -> None:
        self.description = f"zip parts {', '.join(p.name for p in parts)} in {parts[0].parent}"
        self._file = ConcatenatedFile(parts)
        try:
            self._zip = zipfile.ZipFile(io.BufferedReader(self._file, buffer_size=1 << 20))
        except (zipfile.BadZipFile, OSError) as exc:
            self._file.close()
            sizes = ", ".join(f"{p.name}: {p.stat().st_size} B" for p in parts)
            raise InputError(f"{self.description} do not form a valid zip ({exc}); a part is truncated or "
                             f"corrupt ({sizes}); delete it from the source or cache and run again") from exc
        # Index by `folder/file.mp3` whatever directory the archive puts the folders in.
        self._names = {"/".join(name.split("/")[-2:]): name for name in self._zip.namelist()
                       if name.endswith(".mp3")}

    def read(self, mp3_path: str) -> bytes | None:
        name = self._names.get(mp3_path)
        return None if name is None else self._zip.read(name)  # BadZipFile on a CRC mismatch

    def close(self) -> None:
        self._zip.close()
        self._file.close()


class FolderAudioStore:
    """mp3s in extracted folders under a local path or an S3 prefix."""

    def __init__(self, root_uri: str) -> None:
        self.description = f"extracted folders under {root_uri}"
        self._root = root_uri

    def read(self, mp3_path: str) -> bytes | None:
        uri = join(self._root, mp3_path)
        return storage.read_bytes(uri) if storage.exists(uri) else None

    def close(self) -> None:
        pass


class MtatSource:
    def __init__(self, source_uri: str, work_dir: Path, cache_uri: str | None = None,
                 retry: RetryPolicy = DEFAULT_RETRY, stop: StopCheck = stopping.never) -> None:
        self.uri = source_uri
        self.is_web = source_uri.startswith(("http://", "https://"))
        # One folder per source so that files from two sources never mix.
        self.work_dir = work_dir / hashlib.sha256(source_uri.rstrip("/").encode()).hexdigest()[:12]
        self.cache_uri = cache_uri if self.is_web else None
        self.retry = retry
        self.stop = stop

    def annotations(self) -> tuple[Annotations, str]:
        """The parsed annotations and where they came from. Raises `InputError` when they are not MTAT's
        format; a web copy that is not (an error page served with status 200) is kept neither in the work
        folder nor in the cache, so the next attempt downloads it again."""
        uri = join(self.uri, ANNOTATIONS_NAME)
        if not self.is_web:
            if not storage.exists(uri):
                raise InputError(f"no {ANNOTATIONS_NAME} at {uri}; --source must be the folder or prefix holding "
                                 "MagnaTagATune's annotations_final.csv and mp3 parts or folders")
            return parse_annotations(storage.read_bytes(uri), uri), uri
        parsed: list[Annotations] = []
        self._web_file(ANNOTATIONS_NAME, expected_size=None,
                       check=lambda data: parsed.append(parse_annotations(data, uri)))
        return parsed[-1], uri

    def audio(self) -> AudioStore:
        if self.is_web:
            official = self.uri.rstrip("/") == MTAT_BASE_URL.rstrip("/")
            return ZipAudioStore([self._web_file(n, MTAT_PART_SIZES[n] if official else None) for n in PART_NAMES])
        present = [n for n in PART_NAMES if storage.exists(join(self.uri, n))]
        if not present:
            return FolderAudioStore(self.uri)
        if len(present) != len(PART_NAMES):
            missing = sorted(set(PART_NAMES) - set(present))
            raise InputError(f"{self.uri} has {', '.join(present)} but not {', '.join(missing)}; copy every part "
                             "of mp3.zip (or the extracted folders 0-9, a-f) there")
        return ZipAudioStore([self._local_copy(n) for n in PART_NAMES])

    def _local_copy(self, name: str) -> Path:
        """A local path of a part held at a local or S3 source (S3 parts are downloaded once)."""
        loc = storage.parse_uri(join(self.uri, name))
        if loc.scheme == "file":
            return Path(loc.key)
        path = self.work_dir / name
        if not path.is_file():  # boto writes to a temporary name and renames when complete
            stopping.check(self.stop, f"before copying {name}")
            log.info("copying %s to %s", loc.uri, path)
            storage.download_file(loc.uri, path)
        return path

    def _web_file(self, name: str, expected_size: int | None,
                  check: Callable[[bytes], object] | None = None) -> Path:
        """A complete local copy of a file of the web source: from the work folder, else the cache, else the
        site (resuming a partial download). `check`, given the file's bytes, raises `InputError` when they are
        not the file: such a copy is deleted wherever it was found, and a downloaded one is not cached."""
        path = self.work_dir / name
        if path.is_file() and (expected_size is None or path.stat().st_size == expected_size):
            if _rejection(check, path) is None:
                return path
            path.unlink()
        stopping.check(self.stop, f"before fetching {name}")
        if self.cache_uri and self._restore_from_cache(name, path, expected_size):
            if (problem := _rejection(check, path)) is None:
                return path
            log.warning("cached %s is not the file (%s); downloading it again", name, problem)
            storage.delete(join(self.cache_uri, f"{name}.sha256"))  # first: without it the copy is never used
            storage.delete(join(self.cache_uri, name))
            path.unlink()
        download(join(self.uri, name), path, expected_size, self.retry, stop=self.stop)
        if check is not None:
            try:
                check(path.read_bytes())
            except InputError:
                path.unlink()  # an error page is kept nowhere: the next attempt downloads again
                raise
        if self.cache_uri:
            digest = _sha256_file(path)
            storage.upload_file(path, join(self.cache_uri, name))
            storage.write_text(join(self.cache_uri, f"{name}.sha256"), digest)  # written after the part
            log.info("cached %s at %s", name, self.cache_uri)
        return path

    def _restore_from_cache(self, name: str, path: Path, expected_size: int | None) -> bool:
        assert self.cache_uri is not None
        checksum_uri = join(self.cache_uri, f"{name}.sha256")
        if not storage.exists(checksum_uri):  # no checksum: the part's upload never finished
            return False
        storage.download_file(join(self.cache_uri, name), path)
        size_ok = expected_size is None or path.stat().st_size == expected_size
        if size_ok and _sha256_file(path) == storage.read_text(checksum_uri).strip():
            log.info("%s restored from the cache %s", name, self.cache_uri)
            return True
        log.warning("cached %s fails its size or sha256 check; downloading it again", name)
        path.unlink()
        return False


def _rejection(check: Callable[[bytes], object] | None, path: Path) -> str | None:
    """Why `check` refuses the file at `path`, or None when it accepts it (or there is no check)."""
    if check is None:
        return None
    try:
        check(path.read_bytes())
    except InputError as exc:
        return str(exc)
    return None


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()

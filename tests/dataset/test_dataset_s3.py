"""The same job against (moto) S3: an S3 source, an S3 dataset URI, and the web source cached in S3."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from aurax import storage
from aurax.cli import main
from aurax.dataset.shards import load_manifest, load_split
from aurax_contracts import JobExit, RunConfig, RunLayout
from tests.dataset.mtat_fixture import ELIGIBLE_TRAIN, ELIGIBLE_VALIDATION, FileServer, run_config

BUCKET = "aurax-data"
ROOT = f"s3://{BUCKET}"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry without waiting, in small chunks so that a connection dropped after a few bytes keeps them."""
    from aurax.dataset import download

    monkeypatch.setattr(download, "DEFAULT_RETRY",
                        download.RetryPolicy(attempts=3, chunk_bytes=256, sleep=lambda _: None))


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        storage.reset_clients()
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    storage.reset_clients()


def _upload_tree(client: Any, folder: Path, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.relative_to(folder).as_posix()}")


def _keys(client: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def _run(client: Any, config: RunConfig, source: str, work_dir: Path) -> tuple[int, str]:
    layout = RunLayout(ROOT, config.run_id)
    client.put_object(Bucket=BUCKET, Key=f"runs/{config.run_id}/config.json",
                      Body=config.model_dump_json().encode())
    dataset_uri = layout.dataset_uri(config.dataset_fingerprint())
    code = main(["job", "prepare", "--config", layout.config_uri, "--dataset-uri", dataset_uri,
                 "--source", source, "--work-dir", str(work_dir)])
    return code, dataset_uri


@pytest.mark.parametrize("layout", ["zipped", "extracted"])
def test_s3_source_to_s3_dataset(s3: Any, tmp_path: Path, layout: str, request: pytest.FixtureRequest) -> None:
    _upload_tree(s3, request.getfixturevalue(f"{layout}_source"), "sources/mtat")
    config = run_config()
    code, dataset_uri = _run(s3, config, f"{ROOT}/sources/mtat", tmp_path / "work")
    assert code == JobExit.SUCCEEDED
    manifest, manifest_sha = load_manifest(dataset_uri)
    assert manifest.fingerprint == config.dataset_fingerprint() and len(manifest_sha) == 64
    train, _ = load_split(dataset_uri, "train", cache_dir=tmp_path / "cache")
    validation, _ = load_split(dataset_uri, "validation")
    assert sorted(c.clip_id for c in train) == sorted(ELIGIBLE_TRAIN)
    assert sorted(c.clip_id for c in validation) == sorted(ELIGIBLE_VALIDATION)
    prefix = dataset_uri.removeprefix(f"{ROOT}/")
    assert _keys(s3, prefix) == [f"{prefix}/{n}" for n in ("manifest.json", "selection-report.json",
                                                            "train-00000.npz", "validation-00000.npz")]


def test_failed_run_leaves_nothing_in_the_s3_prefix(s3: Any, tmp_path: Path, extracted_source: Path) -> None:
    _upload_tree(s3, extracted_source, "sources/mtat")
    for clip_path in ("0/artist_a-album_a-01-groove-0-29.mp3", "1/artist_b-album_b-01-deep-0-29.mp3",
                      "2/artist_c-album_c-01-jazz-0-29.mp3"):
        s3.put_object(Bucket=BUCKET, Key=f"sources/mtat/{clip_path}", Body=b"corrupt")
    config = run_config(target_tolerance=0.1)
    code, dataset_uri = _run(s3, config, f"{ROOT}/sources/mtat", tmp_path / "work")
    assert code == JobExit.BAD_INPUT
    assert _keys(s3, dataset_uri.removeprefix(f"{ROOT}/")) == []


def _serve(server: FileServer, zipped_source: Path) -> None:
    for path in zipped_source.iterdir():
        server.files[path.name] = path.read_bytes()


def test_web_source_resumes_and_is_cached_in_s3(s3: Any, tmp_path: Path, zipped_source: Path,
                                                file_server: FileServer) -> None:
    _serve(file_server, zipped_source)
    file_server.drop_after["mp3.zip.002"] = 1000  # a dropped connection mid-part
    code, dataset_uri = _run(s3, run_config(), file_server.url, tmp_path / "work")
    assert code == JobExit.SUCCEEDED
    first, resumed = file_server.gets("mp3.zip.002")
    assert first is None and resumed is not None and 0 < int(resumed.removeprefix("bytes=").rstrip("-")) <= 1000
    cached = _keys(s3, "datasets/mtat-source/")
    expected = sorted(f"datasets/mtat-source/{name}{ext}" for name in file_server.files for ext in ("", ".sha256"))
    assert cached == expected
    body = s3.get_object(Bucket=BUCKET, Key="datasets/mtat-source/mp3.zip.002.sha256")["Body"].read().decode()
    assert body == hashlib.sha256(file_server.files["mp3.zip.002"]).hexdigest()

    # Another dataset config on a new machine: everything comes from the S3 cache, nothing from the site.
    file_server.requests.clear()
    code, other_uri = _run(s3, run_config(seed=7, target_clips=5), file_server.url, tmp_path / "fresh-work")
    assert code == JobExit.SUCCEEDED and other_uri != dataset_uri
    assert file_server.requests == []
    assert sum(load_manifest(other_uri)[0].counts.values()) == 5


def test_corrupt_cached_part_is_downloaded_again(s3: Any, tmp_path: Path, zipped_source: Path,
                                                 file_server: FileServer) -> None:
    _serve(file_server, zipped_source)
    assert _run(s3, run_config(), file_server.url, tmp_path / "work")[0] == JobExit.SUCCEEDED
    s3.put_object(Bucket=BUCKET, Key="datasets/mtat-source/mp3.zip.001", Body=b"bit rot")
    file_server.requests.clear()
    code, _ = _run(s3, run_config(seed=3), file_server.url, tmp_path / "fresh-work")
    assert code == JobExit.SUCCEEDED
    assert [name for name, _ in file_server.requests] == ["mp3.zip.001"]


def test_unreachable_site_exits_75_and_keeps_the_partial_part(s3: Any, tmp_path: Path, zipped_source: Path,
                                                              file_server: FileServer) -> None:
    _serve(file_server, zipped_source)
    file_server.drop_after["mp3.zip.001"] = 500
    file_server.fail["mp3.zip.001"] = 2  # then the site is down for the remaining attempts
    code, dataset_uri = _run(s3, run_config(), file_server.url, tmp_path / "work")
    assert code == JobExit.INTERRUPTED
    partial = next((tmp_path / "work").rglob("mp3.zip.001.part"))
    kept = partial.stat().st_size
    assert 0 < kept <= 500
    assert _keys(s3, dataset_uri.removeprefix(f"{ROOT}/")) == []
    assert _keys(s3, "datasets/mtat-source/mp3.zip.001") == []
    # The retried job resumes from there.
    file_server.requests.clear()
    code, _ = _run(s3, run_config(), file_server.url, tmp_path / "work")
    assert code == JobExit.SUCCEEDED and file_server.gets("mp3.zip.001") == [f"bytes={kept}-"]


def test_an_error_page_served_as_the_annotations_is_never_cached(s3: Any, tmp_path: Path, zipped_source: Path,
                                                                  file_server: FileServer) -> None:
    """The site answers 200 with an error page: the job refuses it (exit 65) and keeps it nowhere, so the retry
    after the site recovers downloads the real file instead of reading the page from the S3 cache forever."""
    _serve(file_server, zipped_source)
    real = file_server.files["annotations_final.csv"]
    file_server.files["annotations_final.csv"] = b"<html><body>Down for maintenance</body></html>"
    code, dataset_uri = _run(s3, run_config(), file_server.url, tmp_path / "work")
    assert code == JobExit.BAD_INPUT
    assert _keys(s3, "datasets/mtat-source/") == [] and not list((tmp_path / "work").rglob("annotations_final.csv"))
    file_server.files["annotations_final.csv"] = real
    file_server.requests.clear()
    code, _ = _run(s3, run_config(), file_server.url, tmp_path / "fresh-work")
    assert code == JobExit.SUCCEEDED and file_server.gets("annotations_final.csv") == [None]
    assert s3.get_object(Bucket=BUCKET, Key="datasets/mtat-source/annotations_final.csv")["Body"].read() == real


def test_an_error_page_already_in_the_cache_is_replaced(s3: Any, tmp_path: Path, zipped_source: Path,
                                                        file_server: FileServer) -> None:
    """A cache written before this check (or by hand) that holds a page instead of the annotations is dropped
    and the file downloaded again."""
    _serve(file_server, zipped_source)
    page = b"<html><body>Down for maintenance</body></html>"
    s3.put_object(Bucket=BUCKET, Key="datasets/mtat-source/annotations_final.csv", Body=page)
    s3.put_object(Bucket=BUCKET, Key="datasets/mtat-source/annotations_final.csv.sha256",
                  Body=hashlib.sha256(page).hexdigest().encode())
    code, _ = _run(s3, run_config(), file_server.url, tmp_path / "work")
    assert code == JobExit.SUCCEEDED and file_server.gets("annotations_final.csv") == [None]
    body = s3.get_object(Bucket=BUCKET, Key="datasets/mtat-source/annotations_final.csv")["Body"].read()
    assert body == file_server.files["annotations_final.csv"]

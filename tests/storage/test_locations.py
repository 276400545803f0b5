"""User-given locations are taken literally: S3 keys and file names with `#`, `?`, `%`, spaces or a colon
reach the object or file they name, end to end through the job's storage functions (moto S3 and local
files), the control plane's object access, and the detect/score command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto import mock_aws

from aurax import storage
from aurax.audio import synth
from aurax.audio.io import encode_wav
from aurax.cli import main
from aurax_contracts import JobExit
from aurax_contracts.layout import Location, LocationError, join, parse_location
from aurax_control import aws, objects

BUCKET = "aurax-data"
#: Names a URL parser splits or rewrites: a fragment, a query, an escape, spaces, a plus, a colon.
AWKWARD = ["clips/take #1.wav", "clips/what?.wav", "clips/100% done.wav", "clips/a+b c.wav", "clips/mix:part2.wav",
           "clips/x#y?z=1&w.wav"]


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        storage.reset_clients()
        aws.reset_clients()
        client = boto3.client("s3")
        client.create_bucket(Bucket=BUCKET)
        yield client
    storage.reset_clients()
    aws.reset_clients()


@pytest.mark.parametrize(("location", "expected"), [
    ("s3://b/clips/take #1.wav", Location("s3", "b", "clips/take #1.wav")),
    ("s3://b/clips/what?.wav", Location("s3", "b", "clips/what?.wav")),
    ("s3://b/a%20b", Location("s3", "b", "a%20b")),  # S3 keys are literal: no decoding
    ("S3://b/k", Location("s3", "b", "k")),
    ("s3://b", Location("s3", "b", "")),
    ("file:///tmp/take #1.wav", Location("file", "", "/tmp/take #1.wav")),
    ("file:///tmp/what?.wav", Location("file", "", "/tmp/what?.wav")),
    ("file:///tmp/a%20b.wav", Location("file", "", "/tmp/a b.wav")),  # RFC 8089: Path.as_uri() round-trips
    ("file://localhost/tmp/x.wav", Location("file", "", "/tmp/x.wav")),
    ("file:/tmp/x.wav", Location("file", "", "/tmp/x.wav")),
    ("mix:part2.wav", Location("file", "", "mix:part2.wav")),
    ("take #1.wav", Location("file", "", "take #1.wav")),
    ("C:\\clips\\a.wav", Location("file", "", "C:\\clips\\a.wav")),
])
def test_parse_location(location: str, expected: Location) -> None:
    assert parse_location(location) == expected


@pytest.mark.parametrize(("location", "message"), [
    ("gs://b/k", "unsupported scheme 'gs'"), ("https://example.com/a.wav", "unsupported scheme 'https'"),
    ("s3:///k", "no bucket"), ("file://server/share/a.wav", "names the host 'server'"),
])
def test_unsupported_or_malformed_locations_say_how_to_write_them(location: str, message: str) -> None:
    with pytest.raises(LocationError, match=message):
        parse_location(location)
    with pytest.raises(storage.StorageError, match=message):
        storage.read_bytes(location)


@pytest.mark.parametrize("key", AWKWARD)
def test_s3_keys_are_literal_through_every_storage_function(s3: Any, key: str, tmp_path: Path) -> None:
    uri = f"s3://{BUCKET}/{key}"
    storage.write_bytes(uri, b"payload")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]
    assert storage.read_bytes(uri) == b"payload" and storage.exists(uri)
    assert storage.list_uris(f"s3://{BUCKET}/clips") == [uri]
    storage.download_file(uri, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == b"payload"
    storage.upload_file(tmp_path / "copy", uri + ".bak")
    assert s3.get_object(Bucket=BUCKET, Key=key + ".bak")["Body"].read() == b"payload"
    storage.delete(uri)
    assert not storage.exists(uri)


@pytest.mark.parametrize("key", AWKWARD)
def test_the_control_plane_reads_the_same_keys(s3: Any, key: str) -> None:
    uri = f"s3://{BUCKET}/{key}"
    objects.write(uri, "text")
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"text"
    assert objects.read_text(uri) == "text" and objects.head(uri) is not None
    assert objects.list_keys(f"s3://{BUCKET}/clips") == [key]
    objects.copy(uri, uri + ".copy")
    assert objects.read_text(uri + ".copy") == "text"


@pytest.mark.parametrize("name", [Path(k).name for k in AWKWARD])
def test_local_names_are_literal_as_paths_and_as_file_uris(tmp_path: Path, name: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    storage.write_bytes(name, b"local")  # a relative path: `mix:part2.wav` is a file, not a scheme
    assert (tmp_path / name).read_bytes() == b"local"
    assert storage.read_bytes(str(tmp_path / name)) == b"local"
    assert storage.read_bytes(f"file://{tmp_path}/{name}") == b"local"  # written by hand, unescaped
    assert storage.read_bytes((tmp_path / name).as_uri()) == b"local"  # written by pathlib, escaped
    [listed] = storage.list_uris(str(tmp_path))
    assert storage.read_bytes(listed) == b"local"
    assert storage.exists(join(tmp_path.as_uri(), name))


def test_detect_reads_awkward_local_names_and_s3_keys(s3: Any, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    rate = 22050
    wav = encode_wav(synth.amapiano_groove(rate, 4.0, np.random.default_rng(3)), rate)
    local = tmp_path / "mix:part2 #1.wav"
    local.write_bytes(wav)
    s3.put_object(Bucket=BUCKET, Key="clips/take #1?.wav", Body=wav)
    paths = [str(local), local.as_uri(), f"s3://{BUCKET}/clips/take #1?.wav"]
    assert main(["detect", "--json", *paths]) == JobExit.SUCCEEDED
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["path"] for line in lines] == paths and all("error" not in line for line in lines)

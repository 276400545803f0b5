"""Fixtures of the dataset tests: a generated MTAT source (extracted folders and split zip parts) and a
local HTTP server with byte ranges (helpers in mtat_fixture.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.dataset.mtat_fixture import FileServer, file_handler, write_extracted, write_zipped


@pytest.fixture(scope="session")
def extracted_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Read-only: tests that damage files copy it first."""
    return write_extracted(tmp_path_factory.mktemp("mtat") / "extracted")


@pytest.fixture(scope="session")
def zipped_source(tmp_path_factory: pytest.TempPathFactory, extracted_source: Path) -> Path:
    return write_zipped(tmp_path_factory.mktemp("mtat") / "zipped", extracted_source)


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), file_handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No instance metadata to poll (a test machine is no EC2 instance), and a private download cache."""
    monkeypatch.setenv("AURAX_IMDS_ENDPOINT", "off")
    monkeypatch.setenv("AURAX_CACHE_DIR", str(tmp_path / "aurax-cache"))

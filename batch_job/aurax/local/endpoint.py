"""An HTTP endpoint into the in-process AWS emulation, for the job subprocesses.

moto's mock lives in this process; the Batch jobs run as subprocesses. A subprocess started with
`AWS_ENDPOINT_URL=<endpoint.url>` sends its (signed) AWS requests here; each is re-addressed to the service's
real AWS host (named by the request's SigV4 credential scope) and replayed through `requests`, which moto's
mock intercepts in this process. So a job reads and writes the very buckets the state machine and the Lambda
handlers see, and its S3 writes fire the bucket's notifications, as on AWS. (moto's own server mode would do
this too but needs Flask, which the project does not install.)
"""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

import requests

logger = logging.getLogger(__name__)

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")
#: Headers that describe one hop, not the request (requests sets its own).
_HOP_HEADERS = {"host", "content-length", "connection", "expect", "transfer-encoding", "keep-alive",
                "accept-encoding"}


def service_host(service: str, region: str) -> str:
    """The AWS hostname moto registers for a service's signing name."""
    if service == "s3":
        return "s3.amazonaws.com" if region == "us-east-1" else f"s3.{region}.amazonaws.com"
    return f"{service}.{region}.amazonaws.com"


class _Forwarder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered as botocore expects

    def _forward(self) -> None:
        body = self._read_body()
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        if scope is None:
            self._reply(403, {"Content-Type": "text/plain"}, b"aurax local endpoint: unsigned request; "
                                                                b"use boto3 with AWS credentials set")
            return
        url = f"https://{service_host(scope['service'], scope['region'])}{self.path}"
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            # A HEAD reply announces a length it has no body for: do not try to read one.
            response = requests.request(self.command, url, headers=headers, data=body, allow_redirects=False,
                                        timeout=600, stream=self.command == "HEAD")
        except Exception as exc:  # the emulation itself failed: say so rather than drop the connection
            logger.exception("emulated %s %s failed", self.command, url)
            self._reply(500, {"Content-Type": "text/plain"}, f"aurax local endpoint: {exc}".encode())
            return
        # The reply's own Server and Date headers are added by send_response.
        reply_headers = {k: v for k, v in response.headers.items()
                         if k.lower() not in _HOP_HEADERS | {"content-encoding", "server", "date"}}
        # A HEAD reply has no body but says how long the object is (S3 HeadObject's ContentLength).
        length = response.headers.get("Content-Length", "0") if self.command == "HEAD" else None
        self._reply(response.status_code, reply_headers, b"" if length else response.content, length)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, headers: dict[str, str], body: bytes, head_length: str | None = None) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", head_length if head_length is not None else str(len(body)))
        self.end_headers()
        if head_length is None:
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("endpoint: " + format, *args)


class EmulatorEndpoint:
    """`with EmulatorEndpoint() as endpoint: env["AWS_ENDPOINT_URL"] = endpoint.url` (inside mock_aws)."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Forwarder)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="aurax-endpoint", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

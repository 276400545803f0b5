"""Helpers of the dataset tests: a generated MagnaTagATune in miniature (the exact annotations layout:
tab-separated, every token quoted, the 188 published tags in order, CRLF; short generated mp3 clips, as
extracted folders or split zip parts) and a local HTTP server with byte ranges that can drop a connection."""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import soundfile

from aurax.dataset.annotations import AnnotatedClip, format_annotations
from aurax.dataset.selection import KNOWN_BROKEN
from aurax_contracts import TINY_MODEL_ID, RunConfig

MTAT_TAGS: list[str] = (Path(__file__).parent / "mtat-tags.txt").read_text().splitlines()
CLIP_SECONDS = 2.5
SOURCE_RATE = 16_000
BROKEN_PATH = sorted(KNOWN_BROKEN)[0]

# (clip_id, mp3_path, tags): scores with the default weights in the comment.
FIXTURE_CLIPS: list[tuple[int, str, set[str]]] = [
    (2, "0/artist_a-album_a-01-groove-0-29.mp3", {"house", "percussion", "electronic", "fast"}),  # 6.5
    (5, "0/artist_a-album_a-02-night-30-59.mp3", {"techno", "beat"}),  # 3.5
    (7, "1/artist_b-album_b-01-deep-0-29.mp3", {"deep", "bass", "piano", "slow"}),  # 5.5
    (11, "1/artist_b-album_b-02-drum-30-59.mp3", {"tribal", "bongos", "drums"}),  # 6.0
    (13, "2/artist_c-album_c-01-jazz-0-29.mp3", {"jazzy", "piano", "beats"}),  # 5.0
    (17, "2/artist_c-album_c-02-dance-30-59.mp3", {"dance", "funky", "synth"}),  # 4.0
    (19, "3/artist_d-album_d-01-world-0-29.mp3", {"world", "percussion"}),  # 3.5
    (23, "3/artist_d-album_d-02-rep-30-59.mp3", {"repetitive", "electronic", "beat"}),  # 4.0
    (29, "c/artist_e-album_e-01-val-0-29.mp3", {"house", "deep", "bass"}),  # 7.0
    (31, "c/artist_e-album_e-02-val-30-59.mp3", {"techno", "drums"}),  # 3.5
    (37, "c/artist_e-album_e-03-val-60-89.mp3", {"percussion", "bongos"}),  # 4.0
    (41, "0/artist_a-album_a-03-soft-60-89.mp3", {"piano", "soft"}),  # 1.5: below min_score
    (43, "1/artist_b-album_b-03-mix-60-89.mp3", {"house", "classical"}),  # excluded tag
    (47, "d/artist_f-album_f-01-test-0-29.mp3", {"house", "techno"}),  # excluded folder
    (53, BROKEN_PATH, {"house", "dance"}),  # known broken
]
ELIGIBLE_TRAIN = [2, 5, 7, 11, 13, 17, 19, 23]
ELIGIBLE_VALIDATION = [29, 31, 37]


def annotated_clips() -> list[AnnotatedClip]:
    return [AnnotatedClip(cid, frozenset(tags), path) for cid, path, tags in FIXTURE_CLIPS]


def annotations_bytes(clips: list[AnnotatedClip] | None = None) -> bytes:
    return format_annotations(MTAT_TAGS, annotated_clips() if clips is None else clips)


def mp3_bytes(clip_id: int, seconds: float = CLIP_SECONDS) -> bytes:
    """A distinct, deterministic sound per clip: a decaying tone plus a little noise."""
    t = np.arange(int(seconds * SOURCE_RATE)) / SOURCE_RATE
    rng = np.random.default_rng(clip_id)
    tone = np.sin(2 * np.pi * (110 + 7 * clip_id) * t) * np.exp(-2 * (t % 0.5))
    audio = (0.4 * tone + 0.02 * rng.standard_normal(t.size)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, SOURCE_RATE, format="MP3")
    return buffer.getvalue()


def write_extracted(root: Path) -> Path:
    """`root` with annotations_final.csv and folders 0-9, a-f holding every fixture clip."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_bytes(annotations_bytes())
    for clip_id, path, _ in FIXTURE_CLIPS:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(mp3_bytes(clip_id))
    return root


def zip_parts(extracted: Path, parts: int = 3) -> list[bytes]:
    """The extracted folders zipped and cut into `parts` plain byte ranges, like mp3.zip.001-.003."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for mp3 in sorted(extracted.rglob("*.mp3")):
            archive.write(mp3, mp3.relative_to(extracted).as_posix())
    data = buffer.getvalue()
    cut = -(-len(data) // parts)
    return [data[i * cut:(i + 1) * cut] for i in range(parts)]


def write_zipped(root: Path, extracted: Path) -> Path:
    """`root` with annotations_final.csv and mp3.zip.001-.003 only."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "annotations_final.csv").write_bytes((extracted / "annotations_final.csv").read_bytes())
    for index, part in enumerate(zip_parts(extracted), start=1):
        (root / f"mp3.zip.{index:03d}").write_bytes(part)
    return root


def run_config(**dataset: object) -> RunConfig:
    rules: dict[str, object] = {"target_clips": len(ELIGIBLE_TRAIN) + len(ELIGIBLE_VALIDATION),
                                "target_tolerance": 0.0, "min_clip_seconds": 2.0, **dataset}
    return RunConfig.model_validate({"run_id": "dataset-test", "model": {"model_id": TINY_MODEL_ID},
                                     "dataset": rules})


def write_config(path: Path, config: RunConfig) -> str:
    path.write_text(json.dumps(config.model_dump(mode="json")))
    return str(path)


@dataclass
class FileServer:
    """Serves `files` on 127.0.0.1 with byte ranges. `drop_after[name] = n` makes the next GET of `name` send
    its headers and n bytes, then close the connection; `fail[name] = k` answers the next k GETs with 500;
    `slow[name] = s` sends `name` in 1 KiB pieces, s seconds apart (a multi-GB part in miniature)."""

    files: dict[str, bytes] = field(default_factory=dict)
    slow: dict[str, float] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    ignore_ranges: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(name, Range header) of every GET."""
    url: str = ""

    def gets(self, name: str) -> list[str | None]:
        return [rng for n, rng in self.requests if n == name]


def file_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            name = self.path.lstrip("/")
            ranged = self.headers.get("Range")
            server.requests.append((name, ranged))
            if name not in server.files:
                self.send_error(404)
                return
            if server.fail.get(name, 0) > 0:
                server.fail[name] -= 1
                self.send_error(500)
                return
            data = server.files[name]
            start = 0
            if ranged and not server.ignore_ranges:
                start = int(ranged.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if name in server.drop_after:
                self.wfile.write(body[: server.drop_after.pop(name)])
                self.wfile.flush()
                self.close_connection = True
                return
            if name in server.slow:
                try:
                    for offset in range(0, len(body), 1024):
                        self.wfile.write(body[offset:offset + 1024])
                        self.wfile.flush()
                        time.sleep(server.slow[name])
                except (BrokenPipeError, ConnectionResetError):  # the client went away mid-body
                    self.close_connection = True
                return
            self.wfile.write(body)

    return Handler

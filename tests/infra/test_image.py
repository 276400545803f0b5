"""The job image (Dockerfile): it bakes the pretrained model, then runs offline, and the model loading code finds
the baked snapshot there. (The image is not built here: no Docker engine; its ENTRYPOINT/CMD composition is
tested in tests/local/test_local_batch_runner.py and tests/infra/test_template.py.)"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from dockerfile_parse import DockerfileParser

from tests.infra.support import ROOT

DOCKERFILE = ROOT / "Dockerfile"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _env_up_to(line: int) -> dict[str, str]:
    """The image's environment as built by the Dockerfile's lines before `line` (0-based)."""
    text = "".join(DOCKERFILE.read_text().splitlines(keepends=True)[:line])
    return DockerfileParser(fileobj=io.BytesIO(text.encode())).envs


def test_the_image_bakes_the_model_online_then_runs_offline() -> None:
    parsed = DockerfileParser(path=str(DOCKERFILE))
    bake = next(instruction for instruction in parsed.structure
                if instruction["instruction"] == "RUN" and "snapshot_download" in instruction["value"])
    before = _env_up_to(bake["startline"])
    assert "HF_HOME" in before, "the snapshot must be baked where the jobs read it (HF_HOME set before the bake)"
    assert not set(OFFLINE) & set(before), "offline before the bake: snapshot_download could not download"
    assert {k: parsed.envs.get(k) for k in OFFLINE} == OFFLINE, "the image asks the hub before its baked model"


LOAD = textwrap.dedent("""
    import sys
    from aurax.model import load_musicgen
    print(type(load_musicgen(sys.argv[1])).__name__)
""")


def _bake(hf_home: Path, model_id: str) -> None:
    """What `snapshot_download(model_id, revision=<commit>)` leaves in HF_HOME for the pinned revision: the hub
    cache's snapshots/<commit>, and no refs/main (a commit hash names no branch). A tiny model stands in for the
    real weights."""
    from aurax.model import load_musicgen
    from aurax_contracts import TINY_MODEL_ID
    from aurax_contracts.config import MUSICGEN_SMALL_REVISION

    repo = hf_home / "hub" / f"models--{model_id.replace('/', '--')}"
    load_musicgen(TINY_MODEL_ID).save_pretrained(repo / "snapshots" / MUSICGEN_SMALL_REVISION)


def _load_in_image_env(hf_home: Path, model_id: str) -> subprocess.CompletedProcess[str]:
    runtime = DockerfileParser(path=str(DOCKERFILE)).envs
    env = {**os.environ, **{k: runtime[k] for k in OFFLINE}, "HF_HOME": str(hf_home)}
    return subprocess.run([sys.executable, "-c", LOAD, model_id], env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_model_loader_reads_the_baked_snapshot_offline(tmp_path: Path) -> None:
    _bake(tmp_path / "hf", "facebook/musicgen-small")
    loaded = _load_in_image_env(tmp_path / "hf", "facebook/musicgen-small")
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.strip().endswith("MusicgenForConditionalGeneration")


def test_a_model_that_was_not_baked_fails_at_once_instead_of_downloading(tmp_path: Path) -> None:
    loaded = _load_in_image_env(tmp_path / "empty", "facebook/musicgen-small")
    assert loaded.returncode != 0
    assert "couldn't find them in the cached files" in loaded.stderr

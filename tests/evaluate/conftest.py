"""Fixtures of the evaluation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The tiny model's matrices are small: on a shared 2-core machine, torch's second thread only adds
    contention (generation measured 5-10x faster with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def _no_instance_metadata() -> Iterator[None]:
    """Off EC2: heartbeats carry no placement, without waiting for the metadata service to time out."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AURAX_IMDS_ENDPOINT", "off")
        yield

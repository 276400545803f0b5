"""Fixtures for the local emulation: moto with the pipeline's config and Batch infrastructure."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from aurax.local.moto_patches import MOTO_CONFIG
from tests.local.support import BatchInfra, create_batch_infra


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config=MOTO_CONFIG):
        yield


@pytest.fixture
def batch_infra(aws: None) -> BatchInfra:
    return create_batch_infra()

"""Errors the job commands map to exit codes (see aurax.cli)."""

from __future__ import annotations


class InputError(Exception):
    """Input data (dataset, manifest, checkpoint, audio) is missing or corrupt: exit BAD_INPUT (65).

    The message says what is wrong and how to fix it.
    """

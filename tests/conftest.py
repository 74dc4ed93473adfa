"""Shared test configuration: Hypothesis profiles and the reference-tool fixtures."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

import fuzzer.profiles  # noqa: F401 - registers dev, ci, nightly and repro

# `ci` is what .ci/run uses (CI=true); `dev` is quicker; `nightly` digs deeper.
settings.load_profile(
    os.environ.get("DETFUZZ_HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev")
)


def require_tool(name: str) -> str:
    """The path of an external reference tool. In CI a missing tool fails loudly: a
    differential test that silently skips proves nothing. Elsewhere it skips."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} not found: install qemu-system-misc and binutils-riscv64-unknown-elf"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path

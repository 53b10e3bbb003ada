"""Vision tests: torch/transformers on CPU with a tiny model built locally; nothing downloads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_blip_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.vision.tiny_blip import build_tiny_blip

    yield build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))

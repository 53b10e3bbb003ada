"""Vision tests: torch/transformers on CPU with a tiny model built locally; nothing downloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# huggingface_hub reads these when it is first imported: set them before any test runs.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_blip_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.vision.tiny_blip import build_tiny_blip

    yield build_tiny_blip(tmp_path_factory.mktemp("tiny-blip"))

"""The blip backend, for real, on a tiny random-weights BLIP built by the test."""

from __future__ import annotations

from pathlib import Path

import pytest
from ai_local_core.errors import BackendUnavailable, InvalidInput
from ai_local_core.image import blip as blip_module
from ai_local_core.image.blip import BlipBackend
from ai_local_core.image.loader import ImageLimits, decode_image

from tests.image_samples import jpeg_bytes, png_bytes
from tests.vision.tiny_blip import WORDS

pytestmark = pytest.mark.vision


def test_caption_is_produced_and_max_length_honoured(tiny_blip_path: Path) -> None:
    backend = BlipBackend(str(tiny_blip_path), device="auto")
    image = decode_image(png_bytes(), ImageLimits())
    short = backend.describe(image, max_length=4)
    longer = backend.describe(image, max_length=9)

    assert backend.device == "cpu"
    assert short.backend == "blip"
    assert short.model == str(tiny_blip_path)
    for result, limit in ((short, 4), (longer, 9)):
        words = result.text.split()
        assert result.text and isinstance(result.text, str)
        assert set(words) <= set(WORDS)
        # The tiny model never emits end-of-sequence, so it stops exactly at the bound.
        assert result.tokens == len(words) == limit


def test_same_image_gives_same_caption(tiny_blip_path: Path) -> None:
    backend = BlipBackend(str(tiny_blip_path))
    image = decode_image(jpeg_bytes(), ImageLimits())
    assert backend.describe(image, max_length=6) == backend.describe(image, max_length=6)


def test_model_is_loaded_once_per_process(tiny_blip_path: Path) -> None:
    first = BlipBackend(str(tiny_blip_path))
    first.load()
    second = BlipBackend(str(tiny_blip_path))
    assert not second.loaded
    second.load()
    assert second.loaded
    assert first._loaded is second._loaded
    assert blip_module.loaded_models().count((str(tiny_blip_path), "auto")) == 1


def test_max_length_is_capped_by_the_model(tiny_blip_path: Path) -> None:
    backend = BlipBackend(str(tiny_blip_path))
    result = backend.describe(decode_image(png_bytes(), ImageLimits()), max_length=200)
    assert result.tokens == 63  # max_position_embeddings (64) minus the BOS position


@pytest.mark.parametrize("max_length", [0, -1, 513])
def test_max_length_out_of_range(tiny_blip_path: Path, max_length: int) -> None:
    backend = BlipBackend(str(tiny_blip_path))
    with pytest.raises(InvalidInput, match="max_length"):
        backend.describe(decode_image(png_bytes(), ImageLimits()), max_length=max_length)


@pytest.mark.parametrize(
    "model",
    ["ai-local-core-tests/no-such-model", "/nonexistent/blip/checkpoint"],
)
def test_unloadable_model_is_a_clear_error(model: str) -> None:
    backend = BlipBackend(model)
    with pytest.raises(BackendUnavailable, match="cannot load BLIP model"):
        backend.load()
    assert not backend.loaded


def test_unavailable_device(tiny_blip_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has CUDA")
    with pytest.raises(BackendUnavailable, match="not available"):
        BlipBackend(str(tiny_blip_path), device="cuda").load()

"""The image and translation packages stay light: no torch, transformers or Pillow on import."""

from __future__ import annotations

import importlib
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import pytest
from ai_local_core.errors import BackendUnavailable, InvalidInput
from ai_local_core.image.blip import BlipBackend, resolve_device
from ai_local_core.image.loader import ImageLimits, LoadedImage


def test_importing_the_packages_imports_no_heavy_dependency() -> None:
    code = (
        "import sys\n"
        "import ai_local_core.image, ai_local_core.image.blip, ai_local_core.image.loader\n"
        "import ai_local_core.translation, ai_local_core.translation.google\n"
        "import ai_local_core.cli.describe, ai_local_core.cli.translate, ai_local_core.config\n"
        "import ai_local_core.api.app, ai_local_core.api.remote\n"
        "names = ('torch', 'transformers', 'PIL', 'deep_translator', 'requests', 'bs4')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy) or 'none')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "none"


def _fake_torch(*, cuda: bool, mps: bool | None) -> Any:
    backends = SimpleNamespace()
    if mps is not None:
        backends.mps = SimpleNamespace(is_available=lambda: mps)
    return SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: cuda), backends=backends)


@pytest.mark.parametrize(
    ("requested", "cuda", "mps", "expected"),
    [
        ("auto", True, True, "cuda"),
        ("auto", False, True, "mps"),
        ("auto", False, False, "cpu"),
        ("auto", False, None, "cpu"),
        ("cpu", True, True, "cpu"),
        ("cuda:1", True, False, "cuda:1"),
    ],
)
def test_resolve_device(requested: str, cuda: bool, mps: bool | None, expected: str) -> None:
    assert resolve_device(requested, _fake_torch(cuda=cuda, mps=mps)) == expected


def test_resolve_device_refusals() -> None:
    with pytest.raises(BackendUnavailable, match="not available"):
        resolve_device("cuda", _fake_torch(cuda=False, mps=False))
    with pytest.raises(InvalidInput, match="unknown device"):
        resolve_device("tpu", _fake_torch(cuda=False, mps=False))


def test_missing_vision_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_module(name: str) -> object:
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(importlib, "import_module", no_module)
    backend = BlipBackend("some/model")
    with pytest.raises(BackendUnavailable, match="'vision' extra"):
        backend.load()
    assert not backend.loaded


def test_bad_max_length_is_refused_before_loading() -> None:
    backend = BlipBackend("some/model")
    image = LoadedImage(data=b"", format="PNG", width=1, height=1, image=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="max_length"):
        backend.describe(image, max_length=0)
    assert not backend.loaded


def test_empty_model_id_is_refused() -> None:
    with pytest.raises(InvalidInput):
        BlipBackend("  ")


def test_limits_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        ImageLimits(max_bytes=0)


def test_missing_model_directory_fails_before_importing_torch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    imported: list[str] = []

    def record(name: str) -> object:
        imported.append(name)
        raise ImportError(name)

    monkeypatch.setattr(importlib, "import_module", record)
    with pytest.raises(BackendUnavailable, match="no such directory"):
        BlipBackend("/nonexistent/blip-checkpoint").load()
    assert imported == []

"""The ``blip`` backend: image captioning with transformers' BLIP.

torch and transformers are imported only when the backend loads (they take
seconds to import and live in the optional ``vision`` extra). The processor and
the weights are loaded once per process and per (model, device) and shared by
every backend instance; generation is serialised per model by a lock, which
keeps peak memory flat when a threaded server sends concurrent requests.

``model`` is a Hugging Face model id (fetched into the local cache by
transformers, or read from it when ``HF_HUB_OFFLINE=1``) or a local directory
written by ``save_pretrained``. ``max_length`` bounds the generated caption in
tokens (``max_new_tokens``).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

from ai_local_core.config import DEFAULT_BLIP_MODEL
from ai_local_core.errors import BackendUnavailable, DescribeFailed, InvalidInput
from ai_local_core.image.base import (
    DEFAULT_MAX_LENGTH,
    MAX_LENGTH_LIMIT,
    Description,
    ImageBackend,
)
from ai_local_core.image.loader import LoadedImage

logger = logging.getLogger(__name__)

_DEVICES: Final = ("auto", "cpu", "cuda", "mps")


@dataclass
class _LoadedBlip:
    torch: Any
    processor: Any
    model: Any
    device: str
    dtype: Any
    max_new_tokens_cap: int
    special_ids: frozenset[int]
    lock: threading.Lock


_CACHE: dict[tuple[str, str], _LoadedBlip] = {}
_CACHE_LOCK = threading.Lock()


def _import_vision() -> tuple[Any, Any]:
    try:
        torch = importlib.import_module("torch")
        transformers = importlib.import_module("transformers")
    except ImportError as exc:
        raise BackendUnavailable(
            f"the blip backend needs the 'vision' extra (torch, transformers): {exc}"
        ) from None
    return torch, transformers


def resolve_device(requested: str, torch: Any) -> str:
    """Map ``auto`` to cuda, then mps, then cpu; refuse a device that is not there."""
    kind = requested.split(":", 1)[0]
    if kind not in _DEVICES:
        raise InvalidInput(f"unknown device {requested!r}: use one of {', '.join(_DEVICES)}")
    cuda = bool(torch.cuda.is_available())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    if kind == "auto":
        return "cuda" if cuda else "mps" if mps else "cpu"
    if (kind == "cuda" and not cuda) or (kind == "mps" and not mps):
        raise BackendUnavailable(f"device {requested!r} was requested but is not available")
    return requested


def _dtype_keyword(transformers: Any) -> str:
    """``dtype`` from transformers 4.56 on (``torch_dtype`` is deprecated there)."""
    try:
        major, minor = (int(part) for part in str(transformers.__version__).split(".")[:2])
    except ValueError:
        return "dtype"
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def _load(model_id: str, device: str) -> _LoadedBlip:
    if model_id.startswith(("/", "./", "../", "~")) and not Path(model_id).expanduser().is_dir():
        # Clearly a path, and not there: say so before spending seconds importing torch.
        raise BackendUnavailable(f"cannot load BLIP model {model_id!r}: no such directory")
    torch, transformers = _import_vision()
    resolved = resolve_device(device, torch)
    dtype = torch.float16 if resolved.startswith("cuda") else torch.float32
    started = time.perf_counter()
    try:
        source = str(Path(model_id).expanduser()) if model_id.startswith("~") else model_id
        processor = transformers.BlipProcessor.from_pretrained(source, use_fast=False)
        model = transformers.BlipForConditionalGeneration.from_pretrained(
            source, **{_dtype_keyword(transformers): dtype}
        )
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackendUnavailable(f"cannot load BLIP model {model_id!r}: {exc}") from None
    model.to(resolved)
    model.eval()
    positions = int(model.config.text_config.max_position_embeddings)
    logger.info(
        "loaded BLIP model %s on %s in %.2f s", model_id, resolved, time.perf_counter() - started
    )
    return _LoadedBlip(
        torch=torch,
        processor=processor,
        model=model,
        device=resolved,
        dtype=dtype,
        max_new_tokens_cap=max(1, positions - 1),
        special_ids=frozenset(int(i) for i in processor.tokenizer.all_special_ids),
        lock=threading.Lock(),
    )


def loaded_models() -> list[tuple[str, str]]:
    """The (model, device) pairs loaded in this process."""
    with _CACHE_LOCK:
        return list(_CACHE)


class BlipBackend(ImageBackend):
    """Caption images with a BLIP checkpoint."""

    name: ClassVar[str] = "blip"

    def __init__(self, model: str = DEFAULT_BLIP_MODEL, device: str = "auto") -> None:
        if not model.strip():
            raise InvalidInput("the BLIP model id or path is empty")
        self._model_id = model
        self._device = device
        self._loaded: _LoadedBlip | None = None

    @property
    def model(self) -> str:
        return self._model_id

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def device(self) -> str | None:
        """The resolved device once loaded."""
        return self._loaded.device if self._loaded else None

    def load(self) -> None:
        self._ensure_loaded()

    def _ensure_loaded(self) -> _LoadedBlip:
        if self._loaded is not None:
            return self._loaded
        key = (self._model_id, self._device)
        with _CACHE_LOCK:
            entry = _CACHE.get(key)
            if entry is None:
                entry = _load(self._model_id, self._device)
                _CACHE[key] = entry
        self._loaded = entry
        return entry

    def describe(self, image: LoadedImage, *, max_length: int = DEFAULT_MAX_LENGTH) -> Description:
        if not 1 <= max_length <= MAX_LENGTH_LIMIT:
            raise InvalidInput(f"max_length must be between 1 and {MAX_LENGTH_LIMIT}")
        blip = self._ensure_loaded()
        new_tokens = min(max_length, blip.max_new_tokens_cap)
        torch = blip.torch
        try:
            with blip.lock, torch.inference_mode():
                inputs = blip.processor(images=image.image, return_tensors="pt")
                pixel_values = inputs["pixel_values"].to(device=blip.device, dtype=blip.dtype)
                output = blip.model.generate(pixel_values=pixel_values, max_new_tokens=new_tokens)
        except (RuntimeError, ValueError) as exc:
            raise DescribeFailed(f"BLIP generation failed: {exc}") from None
        ids = [int(i) for i in output[0].tolist()]
        text = str(blip.processor.decode(ids, skip_special_tokens=True)).strip()
        tokens = sum(1 for i in ids if i not in blip.special_ids)
        return Description(text=text, backend=self.name, model=self._model_id, tokens=tokens)

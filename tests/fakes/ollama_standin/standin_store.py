"""Model store of the Ollama stand-in (a test fixture, never shipped).

Models live under ``OLLAMA_MODELS`` the way Ollama keeps them: a JSON manifest per
model in ``manifests/<registry>/<namespace>/<model>/<tag>`` and content-addressed
blobs in ``blobs/sha256-<hex>``, so pulls and deletes survive restarts. Blobs are
a few KiB of deterministic bytes, not real weights; for the models in REGISTRY_SIZES
the manifests declare the registry's sizes.

Standard library only; runs on Python 3.9+.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DEFAULT_REGISTRY = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
UNKNOWN_MODEL_ERROR = "pull model manifest: file does not exist"
INVALID_NAME_ERROR = "invalid model name"

_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
_HOST = re.compile(r"^[a-z0-9][a-z0-9.-]{0,253}(:[0-9]{1,5})?$")
_VISION_HINTS = ("llava", "vision", "moondream", "minicpm-v", "bakllava", "qwen2.5vl")
_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
_CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
_MODEL_TYPE = "application/vnd.ollama.image.model"
_TEMPLATE_TYPE = "application/vnd.ollama.image.template"
_PARAMS_TYPE = "application/vnd.ollama.image.params"


@dataclass(frozen=True)
class ModelName:
    """``[registry/][namespace/]model[:tag]``, lower-cased like Ollama compares them."""

    host: str
    namespace: str
    model: str
    tag: str

    @classmethod
    def parse(cls, raw: str) -> ModelName | None:
        text = raw.strip().lower()
        if not text or len(text) > 350:
            return None
        rest, tag = text, DEFAULT_TAG
        colon = text.rfind(":")
        if colon > text.rfind("/"):
            rest, tag = text[:colon], text[colon + 1 :]
        parts = rest.split("/")
        if len(parts) == 1:
            host, namespace, model = DEFAULT_REGISTRY, DEFAULT_NAMESPACE, parts[0]
        elif len(parts) == 2:
            host, namespace, model = DEFAULT_REGISTRY, parts[0], parts[1]
        elif len(parts) == 3:
            host, namespace, model = parts[0], parts[1], parts[2]
        else:
            return None
        if not (_HOST.match(host) and _PART.match(namespace) and _PART.match(model)):
            return None
        if not _PART.match(tag):
            return None
        return cls(host, namespace, model, tag)

    @property
    def display(self) -> str:
        """The shortest form, as ``/api/tags`` shows it (``llama3.1:8b``)."""
        if self.host == DEFAULT_REGISTRY and self.namespace == DEFAULT_NAMESPACE:
            return f"{self.model}:{self.tag}"
        if self.host == DEFAULT_REGISTRY:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def manifest_path(self, root: Path) -> Path:
        return root / "manifests" / self.host / self.namespace / self.model / self.tag


# Sizes in bytes that the real registry lists for some models the tests and the sandbox use
# (ollama.com/library, rounded as it shows them). A pull of one of these names writes a manifest
# whose weights layer declares that size, so /api/tags, /api/show and `ollama list` report what
# Ollama would (the VRAM plan of role ollama is computed from them); the blob on disk stays a few
# KiB. Other names report the bytes they really hold. ai_local_core.vram_plan.KNOWN_MODELS has
# the same figures (tests/unit/test_vram_plan.py checks that they agree).
REGISTRY_SIZES = {
    "llama3.1:8b": 4_900_000_000,
    "llama3.2:3b": 2_000_000_000,
    "llama3.2:1b": 1_300_000_000,
    "llava:7b": 4_700_000_000,
    "mistral:7b": 4_100_000_000,
    "qwen2.5:0.5b": 398_000_000,
    "qwen2.5:1.5b": 986_000_000,
    "qwen2.5:3b": 1_900_000_000,
    "qwen2.5:7b": 4_700_000_000,
    "qwen2.5:14b": 9_000_000_000,
    "tinyllama:1.1b": 638_000_000,
}
# The library's default tags (a bare name pulls :latest, the same model as these tags).
REGISTRY_ALIASES = {
    "llama3.1:latest": "llama3.1:8b",
    "llama3.2:latest": "llama3.2:3b",
    "llava:latest": "llava:7b",
    "mistral:latest": "mistral:7b",
    "qwen2.5:latest": "qwen2.5:7b",
    "tinyllama:latest": "tinyllama:1.1b",
}


@dataclass(frozen=True)
class Layer:
    media_type: str
    digest: str  # "sha256:<hex>"
    data: bytes
    # The size the manifest declares (the registry's, see REGISTRY_SIZES); 0: len(data).
    declared_size: int = 0

    @property
    def size(self) -> int:
        return self.declared_size or len(self.data)


@dataclass
class StoredModel:
    name: ModelName
    digest: str  # hex sha256 of the manifest, as /api/tags shows it
    size: int
    modified: float
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> str:
        return str(self.config.get("model_family") or "llama")

    @property
    def capabilities(self) -> list[str]:
        return list(self.config.get("capabilities") or ["completion"])

    @property
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": self.config.get("model_format", "gguf"),
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.config.get("model_type", "7B"),
            "quantization_level": self.config.get("file_type", "Q4_K_M"),
        }

    @property
    def modified_at(self) -> str:
        return iso_time(self.modified)


def iso_time(timestamp: float) -> str:
    """RFC 3339 with the local offset, like Go's time.Time JSON encoding."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).astimezone().isoformat()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _model_config(name: ModelName) -> dict[str, Any]:
    family_match = re.match(r"[a-z]+", name.model)
    family = family_match.group(0) if family_match else "llama"
    size_match = re.search(r"(\d+(?:\.\d+)?)b", name.tag) or re.search(
        r"(\d+(?:\.\d+)?)b", name.model
    )
    parameter_size = f"{float(size_match.group(1)):.1f}B" if size_match else "7.2B"
    if "embed" in name.model:
        capabilities = ["embedding"]
        family = "nomic-bert" if family == "nomic" else family
    elif any(hint in name.model for hint in _VISION_HINTS):
        capabilities = ["completion", "vision"]
    else:
        capabilities = ["completion"]
    return {
        "model_format": "gguf",
        "model_family": family,
        "model_families": [family],
        "model_type": parameter_size,
        "file_type": "Q4_K_M",
        "capabilities": capabilities,
        "architecture": "amd64",
        "os": "linux",
    }


def registry_size(name: ModelName) -> int:
    """The registry's size of ``name``'s weights (0: not in REGISTRY_SIZES)."""
    if name.host != DEFAULT_REGISTRY or name.namespace != DEFAULT_NAMESPACE:
        return 0
    key = f"{name.model}:{name.tag}"
    return REGISTRY_SIZES.get(REGISTRY_ALIASES.get(key, key), 0)


def _fake_weights(name: ModelName) -> bytes:
    seed = hashlib.sha256(f"weights:{name.display}".encode()).digest()
    blocks = [hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(128)]
    return b"GGUF" + b"".join(blocks)  # 4 KiB + 4 bytes


class ModelStore:
    """Thread-safe access to the manifests and blobs under one directory."""

    def __init__(self, root: Path, unknown_patterns: list[str] | None = None) -> None:
        self.root = root
        self.unknown_patterns = [p.strip().lower() for p in unknown_patterns or [] if p.strip()]
        self._lock = threading.RLock()
        (root / "manifests").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)

    # -------------------------------------------------------------- queries

    def is_pullable(self, name: ModelName) -> bool:
        """Every name except ``missing*`` and the ``OLLAMA_STANDIN_UNKNOWN`` patterns."""
        if name.model.startswith("missing"):
            return False
        candidates = (name.display, f"{name.model}:{name.tag}", name.model)
        return not any(
            fnmatch.fnmatchcase(candidate, pattern)
            for pattern in self.unknown_patterns
            for candidate in candidates
        )

    def get(self, name: ModelName) -> StoredModel | None:
        path = name.manifest_path(self.root)
        with self._lock:
            try:
                raw = path.read_bytes()
                modified = path.stat().st_mtime
            except OSError:
                return None
            try:
                manifest = json.loads(raw)
                layers = manifest.get("layers", [])
                size = sum(int(layer.get("size", 0)) for layer in layers)
                size += int(manifest.get("config", {}).get("size", 0))
                config_digest = str(manifest.get("config", {}).get("digest", ""))
                config = json.loads(self._blob_path(config_digest).read_bytes())
            except (OSError, ValueError, TypeError, AttributeError):
                return None
        return StoredModel(
            name=name,
            digest=_sha256(raw),
            size=size,
            modified=modified,
            config=config if isinstance(config, dict) else {},
        )

    def models(self) -> list[StoredModel]:
        models: list[StoredModel] = []
        manifests = self.root / "manifests"
        with self._lock:
            for path in manifests.glob("*/*/*/*"):
                if not path.is_file():
                    continue
                host, namespace, model = path.parts[-4:-1]
                name = ModelName(host, namespace, model, path.name)
                stored = self.get(name)
                if stored is not None:
                    models.append(stored)
        models.sort(key=lambda m: m.modified, reverse=True)
        return models

    # -------------------------------------------------------------- changes

    def layers_for(self, name: ModelName) -> tuple[Layer, list[Layer]]:
        """The config blob and the layers a pull of ``name`` writes."""
        weights = _fake_weights(name)
        template = b"{{ if .System }}{{ .System }}\n{{ end }}{{ .Prompt }}"
        params = json.dumps({"stop": ["<|eot_id|>"]}).encode()
        layers = [
            Layer(_MODEL_TYPE, f"sha256:{_sha256(weights)}", weights, registry_size(name)),
            Layer(_TEMPLATE_TYPE, f"sha256:{_sha256(template)}", template),
            Layer(_PARAMS_TYPE, f"sha256:{_sha256(params)}", params),
        ]
        config_bytes = json.dumps(_model_config(name), sort_keys=True).encode()
        config = Layer(_CONFIG_TYPE, f"sha256:{_sha256(config_bytes)}", config_bytes)
        return config, layers

    def write_blob(self, layer: Layer) -> None:
        path = self._blob_path(layer.digest)
        if path.is_file() and path.stat().st_size == len(layer.data):
            return
        tmp = path.with_name(f"{path.name}-partial-{os.getpid()}-{threading.get_ident()}")
        tmp.write_bytes(layer.data)
        os.replace(tmp, path)

    def write_manifest(self, name: ModelName, config: Layer, layers: list[Layer]) -> None:
        manifest = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST_TYPE,
            "config": {
                "mediaType": config.media_type,
                "digest": config.digest,
                "size": config.size,
            },
            "layers": [
                {"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        }
        path = name.manifest_path(self.root)
        with self._lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
            tmp.write_text(json.dumps(manifest), encoding="utf-8")
            os.replace(tmp, path)
            os.utime(path, (time.time(), time.time()))

    def install(self, name: ModelName) -> StoredModel:
        """Write a model at once (preloading); pulls go through :meth:`write_blob`."""
        config, layers = self.layers_for(name)
        for layer in [*layers, config]:
            self.write_blob(layer)
        self.write_manifest(name, config, layers)
        stored = self.get(name)
        assert stored is not None
        return stored

    def copy(self, source: ModelName, destination: ModelName) -> bool:
        with self._lock:
            src = source.manifest_path(self.root)
            if not src.is_file():
                return False
            dst = destination.manifest_path(self.root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
            return True

    def delete(self, name: ModelName) -> bool:
        with self._lock:
            path = name.manifest_path(self.root)
            try:
                path.unlink()
            except FileNotFoundError:
                return False
            for parent in (path.parent, path.parent.parent):
                try:
                    parent.rmdir()
                except OSError:
                    break
            self._prune_blobs()
            return True

    def _prune_blobs(self) -> None:
        used: set[str] = set()
        for path in (self.root / "manifests").glob("*/*/*/*"):
            try:
                manifest = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            used.add(str(manifest.get("config", {}).get("digest", "")))
            used.update(str(layer.get("digest", "")) for layer in manifest.get("layers", []))
        for blob in (self.root / "blobs").glob("sha256-*"):
            if blob.name.replace("sha256-", "sha256:", 1) not in used:
                blob.unlink(missing_ok=True)

    def _blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / digest.replace(":", "-", 1)

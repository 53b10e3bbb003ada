"""The VRAM budget of an Ollama node: do the declared models fit the GPU, alone and together?

Role ``ollama`` calls :func:`role_plan` through the filter ``ai_local_core.node.ollama_vram_plan``
(``collections/ansible_collections/ai_local_core/node/plugins/filter/vram.py``) before it pulls
or preloads anything, prints the plan and stops only when one declared model cannot fit at all;
``playbooks/status.yml`` (``make status``) prints the same plan.
docs/ollama-role.md ("VRAM budget") explains the figures for an RTX 3060.

Every figure is an **estimate**, modelled on how Ollama itself sizes a model before
it loads it (its scheduler decides from such an estimate whether a model fits beside
the loaded ones or evicts them):

* weights: the model's size on disk as Ollama reports it (``/api/tags`` ``size``),
  all layers on the GPU; for a model not pulled yet, the size the Ollama library
  lists (:data:`KNOWN_MODELS`), else the model is left out of the plan;
* KV cache: ``2 (K and V) x layers x KV heads x head size x bytes per element x
  context x parallel requests``; 2 bytes per element for ``f16``, 34/32 for ``q8_0``,
  18/32 for ``q4_0`` (their block formats; the quantized caches need flash attention,
  without it Ollama keeps ``f16``). The shape comes from :data:`KNOWN_MODELS`; for
  other models it is :data:`UNKNOWN_KV_BYTES_PER_TOKEN_PER_BILLION` per billion
  parameters, at most 1 MiB a token (a conservative figure: models with grouped-query
  attention need 2 to 8 times less, old ones without it about as much);
* compute buffers: Ollama's estimate of the full-offload graph of llama-type models,
  ``4 x batch (512) x max(1 + 4 x embedding + context x (1 + heads), embedding +
  vocabulary)``; an upper bound with flash attention;
* runner: 457 MiB per loaded model, the CUDA minimum Ollama reserves for each runner;
* per GPU, 256 MiB that the driver keeps (CUDA reports an RTX 3060's 12288 MiB as
  11.76 GiB), and whatever other programs hold (``ollama_vram_reserved_gb``, e.g.
  BLIP in the services on the same card).

Standard library only: the filter runs inside the controller's Ansible, whose Python
may not have the package's dependencies.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "GIB",
    "KNOWN_MODELS",
    "Architecture",
    "Estimate",
    "KnownModel",
    "Plan",
    "PlanSettings",
    "default_context_length",
    "estimate_model",
    "known_model",
    "normalize_name",
    "parse_nvidia_smi_memory",
    "plan_vram",
    "role_plan",
]

GIB: Final = 1024**3
MIB: Final = 1024**2
#: Tokens Ollama evaluates at once (num_batch), which sizes the compute buffers.
BATCH: Final = 512
#: What Ollama reserves on a CUDA GPU for each runner (one per loaded model).
RUNNER_BYTES: Final = 457 * MIB
#: What the driver keeps of each GPU's memory (nvidia-smi's total minus what CUDA offers).
DRIVER_RESERVE_BYTES: Final = 256 * MIB
#: KV cache bytes per element by OLLAMA_KV_CACHE_TYPE (ggml blocks: 32 values in 34 / 18 bytes).
KV_BYTES_PER_ELEMENT: Final[Mapping[str, float]] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
#: f16 KV bytes per token and billion parameters for a model whose shape is not known, and the
#: most that guess gives (Llama 2 13B, without grouped-query attention, needs 800 KiB a token).
UNKNOWN_KV_BYTES_PER_TOKEN_PER_BILLION: Final = 64 * 1024
UNKNOWN_KV_BYTES_PER_TOKEN_MAX: Final = 1024 * 1024
#: Bytes per parameter of a Q4_K_M model, to guess the parameters from the size on disk.
BYTES_PER_PARAMETER_Q4: Final = 0.6


@dataclass(frozen=True)
class Architecture:
    """The shape that sizes a model's KV cache and compute buffers."""

    layers: int
    kv_heads: int
    head_dim: int
    heads: int
    embedding: int
    vocabulary: int

    @property
    def kv_bytes_per_token_f16(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * 2


@dataclass(frozen=True)
class KnownModel:
    """A library model: its size on disk (bytes, as ollama.com lists it) and its shape."""

    size: int
    architecture: Architecture


_LLAMA_8B: Final = Architecture(32, 8, 128, 32, 4096, 128256)
#: Sizes as the Ollama library lists them (rounded), shapes from the models' configurations.
#: The Ollama stand-in (tests/fakes/ollama_standin) reports the same sizes.
KNOWN_MODELS: Final[Mapping[str, KnownModel]] = {
    "llama3.1:8b": KnownModel(4_900_000_000, _LLAMA_8B),
    "llama3.2:3b": KnownModel(2_000_000_000, Architecture(28, 8, 128, 24, 3072, 128256)),
    "llama3.2:1b": KnownModel(1_300_000_000, Architecture(16, 8, 64, 32, 2048, 128256)),
    # LLaVA 1.6 on Mistral 7B; the size includes the CLIP projector (~0.6 GB).
    "llava:7b": KnownModel(4_700_000_000, Architecture(32, 8, 128, 32, 4096, 32064)),
    "mistral:7b": KnownModel(4_100_000_000, Architecture(32, 8, 128, 32, 4096, 32768)),
    "qwen2.5:0.5b": KnownModel(398_000_000, Architecture(24, 2, 64, 14, 896, 151936)),
    "qwen2.5:1.5b": KnownModel(986_000_000, Architecture(28, 2, 128, 12, 1536, 151936)),
    "qwen2.5:3b": KnownModel(1_900_000_000, Architecture(36, 2, 128, 16, 2048, 151936)),
    "qwen2.5:7b": KnownModel(4_700_000_000, Architecture(28, 4, 128, 28, 3584, 152064)),
    "qwen2.5:14b": KnownModel(9_000_000_000, Architecture(48, 8, 128, 40, 5120, 152064)),
    "tinyllama:1.1b": KnownModel(638_000_000, Architecture(22, 4, 64, 32, 2048, 32000)),
}
#: The library's default tags.
_ALIASES: Final[Mapping[str, str]] = {
    "llama3.1:latest": "llama3.1:8b",
    "llama3.2:latest": "llama3.2:3b",
    "llava:latest": "llava:7b",
    "mistral:latest": "mistral:7b",
    "qwen2.5:latest": "qwen2.5:7b",
    "tinyllama:latest": "tinyllama:1.1b",
}
_LIBRARY_PREFIXES: Final = ("registry.ollama.ai/library/", "library/")


def normalize_name(name: str) -> str:
    """Lower case, a bare name with ``:latest``: how ``/api/tags`` names a model."""
    lowered = name.strip().lower()
    return lowered if ":" in lowered.rsplit("/", 1)[-1] else f"{lowered}:latest"


def known_model(name: str) -> KnownModel | None:
    """The :data:`KNOWN_MODELS` entry of ``name`` (default tags and library prefixes allowed)."""
    key = normalize_name(name)
    for prefix in _LIBRARY_PREFIXES:
        key = key.removeprefix(prefix)
    return KNOWN_MODELS.get(_ALIASES.get(key, key))


def default_context_length(vram_bytes: int) -> int:
    """Ollama's context window when OLLAMA_CONTEXT_LENGTH is 0: chosen by the VRAM."""
    if vram_bytes < 24 * GIB:
        return 4096
    if vram_bytes < 48 * GIB:
        return 32768
    return 262144


@dataclass(frozen=True)
class PlanSettings:
    """The server settings that size a loaded model (the role's ``ollama_*`` variables)."""

    context_length: int = 0
    num_parallel: int = 1
    kv_cache_type: str = "f16"
    flash_attention: bool = True
    max_loaded_models: int = 1

    def context_for(self, vram_bytes: int) -> int:
        return self.context_length or default_context_length(vram_bytes)

    def max_loaded_for(self, gpus: int) -> int:
        """OLLAMA_MAX_LOADED_MODELS; 0 is Ollama's default, 3 per GPU."""
        return self.max_loaded_models or 3 * max(1, gpus)

    @property
    def kv_type_used(self) -> str:
        """Ollama keeps an f16 cache without flash attention."""
        if self.kv_cache_type in KV_BYTES_PER_ELEMENT and self.flash_attention:
            return self.kv_cache_type
        return "f16"


@dataclass(frozen=True)
class Estimate:
    """What one model needs in VRAM while it is loaded."""

    name: str
    weights: int
    kv_cache: int
    compute: int
    runner: int
    #: Where the weights figure comes from: ``Ollama`` (installed) or ``size table``.
    size_source: str
    #: ``None`` when the shape is known, else how the KV cache was guessed.
    shape_note: str | None = None

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.runner


@dataclass(frozen=True)
class Unplanned:
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    vram: int
    gpus: int
    vram_source: str
    reserved: int
    context: int
    settings: PlanSettings
    estimates: tuple[Estimate, ...]
    unplanned: tuple[Unplanned, ...]

    @property
    def driver_reserve(self) -> int:
        return DRIVER_RESERVE_BYTES * max(1, self.gpus)

    @property
    def budget(self) -> int:
        """The VRAM left to Ollama."""
        return max(0, self.vram - self.driver_reserve - self.reserved)

    @property
    def max_loaded(self) -> int:
        return self.settings.max_loaded_for(self.gpus)

    @property
    def too_big(self) -> tuple[Estimate, ...]:
        """Models that do not fit even alone."""
        return tuple(e for e in self.estimates if e.total > self.budget)

    @property
    def fitting(self) -> tuple[Estimate, ...]:
        return tuple(e for e in self.estimates if e.total <= self.budget)

    def combinations(self) -> tuple[list[tuple[Estimate, ...]], list[tuple[Estimate, ...]]]:
        """(sets that fit together, sets that do not) of 2 up to max_loaded models that fit
        alone: the largest sets that fit, and the smallest that do not."""
        fitting = self.fitting
        top = min(self.max_loaded, len(fitting))
        fit: list[tuple[Estimate, ...]] = []
        overflow: list[tuple[Estimate, ...]] = []
        fits_by_names: set[frozenset[str]] = set()
        for size in range(2, top + 1):
            for combo in itertools.combinations(fitting, size):
                names = frozenset(e.name for e in combo)
                if sum(e.total for e in combo) <= self.budget:
                    fits_by_names.add(names)
                    fit.append(combo)
                elif size == 2 or all(
                    names - {e.name} in fits_by_names for e in combo
                ):  # the smallest set that overflows: every smaller one fits
                    overflow.append(combo)
        maximal = [
            combo
            for combo in fit
            if not any(frozenset(e.name for e in combo) < other for other in fits_by_names)
        ]
        return maximal, overflow

    @property
    def nothing_swaps(self) -> bool:
        """Every declared model fits, and all of them are loaded at once."""
        fitting = self.fitting
        return (
            not self.too_big
            and len(fitting) <= self.max_loaded
            and sum(e.total for e in fitting) <= self.budget
        )

    def lines(self) -> list[str]:
        s = self.settings
        out = [
            f"VRAM plan (estimates, see docs/ollama-role.md): {gib(self.vram)} GiB "
            f"({self.vram_source}) - {gib(self.driver_reserve)} driver - {gib(self.reserved)} "
            f"reserved (ollama_vram_reserved_gb) = {gib(self.budget)} GiB for Ollama; context "
            f"{self.context} x {s.num_parallel} parallel, KV cache {s.kv_type_used}, "
            f"up to {self.max_loaded} loaded (ollama_max_loaded_models)"
        ]
        for e in self.estimates:
            verdict = "fits alone" if e.total <= self.budget else "does NOT fit"
            note = f"; KV cache {e.shape_note}" if e.shape_note else ""
            out.append(
                f"{e.name}: {gib(e.total)} GiB = weights {gib(e.weights)} ({e.size_source}) + "
                f"KV cache {gib(e.kv_cache)} + compute {gib(e.compute)} + runner "
                f"{gib(e.runner)}: {verdict}{note}"
            )
        out.extend(f"{u.name}: not planned, {u.reason}" for u in self.unplanned)
        fit, overflow = self.combinations()
        out.extend(
            f"fit together: {_names(c)} ({gib(_sum(c))} GiB, {gib(self.budget - _sum(c))} spare)"
            for c in fit
        )
        out.extend(
            f"swap: {_names(c)} need {gib(_sum(c))} GiB together, Ollama unloads one "
            "to load the other"
            for c in overflow
        )
        fitting = self.fitting
        if len(fitting) > self.max_loaded:
            together = _sum(fitting)
            room = (
                f"they would fit with ollama_max_loaded_models {len(fitting)}"
                if together <= self.budget
                else f"more than the {gib(self.budget)} GiB"
            )
            out.append(
                f"swap: ollama_max_loaded_models {self.max_loaded} keeps at most "
                f"{self.max_loaded} of {_names(fitting)} loaded: a request for another one "
                f"unloads one first (all of them need {gib(together)} GiB: {room})"
            )
        out.append(self.verdict())
        return out

    def verdict(self) -> str:
        if self.too_big:
            return "verdict: " + "; ".join(self.failure_for(e) for e in self.too_big)
        if self.nothing_swaps:
            if not self.estimates:
                return "verdict: nothing swaps, no declared model to plan"
            if len(self.estimates) == 1:
                return f"verdict: nothing swaps, {self.estimates[0].name} fits"
            return f"verdict: nothing swaps, all {len(self.estimates)} fit and stay loaded together"
        return "verdict: every declared model fits alone; the combinations above swap"

    def failure_for(self, e: Estimate) -> str:
        return (
            f"{e.name} cannot fit: it needs about {gib(e.total)} GiB (weights {gib(e.weights)}, "
            f"KV cache {gib(e.kv_cache)} for {self.context} x {self.settings.num_parallel} "
            f"tokens) and Ollama has {gib(self.budget)} GiB of VRAM ({gib(self.vram)} GiB "
            f"{self.vram_source}); it would run partly on the CPU, many times slower"
        )


def gib(value: float) -> str:
    return f"{value / GIB:.2f}"


def _sum(combo: Iterable[Estimate]) -> int:
    return sum(e.total for e in combo)


def _names(combo: Iterable[Estimate]) -> str:
    return " + ".join(e.name for e in combo)


def _parameters_billion(details: Mapping[str, Any], size: int) -> float:
    """``details.parameter_size`` (``8.0B``, ``494.03M``) in billions, else guessed from size."""
    text = str(details.get("parameter_size") or "").strip().upper()
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([KMBT])", text)
    if match:
        scale = {"K": 1e-6, "M": 1e-3, "B": 1.0, "T": 1e3}[match.group(2)]
        return float(match.group(1)) * scale
    return size / BYTES_PER_PARAMETER_Q4 / 1e9


def estimate_model(
    name: str,
    weights: int,
    *,
    context: int,
    settings: PlanSettings,
    size_source: str,
    details: Mapping[str, Any] | None = None,
) -> Estimate:
    """The VRAM one loaded model needs (see the module's docstring for the formula)."""
    tokens = context * max(1, settings.num_parallel)
    known = known_model(name)
    note: str | None = None
    if known is not None:
        arch = known.architecture
        kv_f16_per_token = float(arch.kv_bytes_per_token_f16)
    else:
        billions = _parameters_billion(details or {}, weights)
        kv_f16_per_token = min(
            UNKNOWN_KV_BYTES_PER_TOKEN_PER_BILLION * billions, UNKNOWN_KV_BYTES_PER_TOKEN_MAX
        )
        arch = _LLAMA_8B
        note = f"guessed from {billions:.1f}B parameters (shape unknown)"
    per_element = KV_BYTES_PER_ELEMENT[settings.kv_type_used]
    kv_cache = int(kv_f16_per_token / 2 * per_element * tokens)
    compute = (
        4
        * BATCH
        * max(
            1 + 4 * arch.embedding + tokens * (1 + arch.heads),
            arch.embedding + arch.vocabulary,
        )
    )
    return Estimate(name, weights, kv_cache, compute, RUNNER_BYTES, size_source, note)


def plan_vram(
    models: Sequence[str],
    installed: Sequence[Mapping[str, Any]],
    *,
    vram: int,
    gpus: int = 1,
    vram_source: str = "given",
    reserved: int = 0,
    settings: PlanSettings | None = None,
) -> Plan:
    """Plan ``models`` (declared names) with the sizes of ``installed`` (``/api/tags`` models)."""
    settings = settings or PlanSettings()
    context = settings.context_for(vram)
    by_name = {
        normalize_name(str(m.get("name") or m.get("model") or "")): m
        for m in installed
        if isinstance(m, Mapping)
    }
    estimates: list[Estimate] = []
    unplanned: list[Unplanned] = []
    seen: set[str] = set()
    for raw in models:
        name = normalize_name(raw)
        if name in seen:
            continue
        seen.add(name)
        entry = by_name.get(name)
        size = entry.get("size") if entry is not None else None
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            details = entry.get("details") if entry is not None else None
            estimates.append(
                estimate_model(
                    name,
                    size,
                    context=context,
                    settings=settings,
                    size_source="Ollama",
                    details=details if isinstance(details, Mapping) else None,
                )
            )
            continue
        known = known_model(name)
        if known is not None:
            estimates.append(
                estimate_model(
                    name, known.size, context=context, settings=settings, size_source="size table"
                )
            )
        else:
            unplanned.append(
                Unplanned(name, "not pulled yet and not in the size table: planned after its pull")
            )
    return Plan(
        vram=vram,
        gpus=gpus,
        vram_source=vram_source,
        reserved=reserved,
        context=context,
        settings=settings,
        estimates=tuple(estimates),
        unplanned=tuple(unplanned),
    )


def parse_nvidia_smi_memory(lines: Iterable[str]) -> list[int]:
    """``nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits`` -> bytes per GPU."""
    totals: list[int] = []
    for line in lines:
        text = line.strip()
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", text):
            totals.append(int(float(text) * MIB))
    return totals


def role_plan(
    models: Sequence[str],
    installed: Sequence[Mapping[str, Any]] | None = None,
    *,
    smi_lines: Sequence[str] | None = None,
    budget_gb: float = 0,
    reserved_gb: float = 0,
    context_length: int = 0,
    num_parallel: int = 1,
    kv_cache_type: str = "f16",
    flash_attention: bool = True,
    max_loaded_models: int = 1,
    check: str = "enforce",
) -> dict[str, Any]:
    """What role ``ollama`` prints and asserts: ``{ok, planned, lines, too_big}``.

    The VRAM is ``budget_gb`` GiB when it is above 0 (one GPU), else the sum of the
    GPUs nvidia-smi lists (``smi_lines``); with neither, the plan is skipped. ``check``
    is ``enforce`` (ok is false when a model cannot fit at all), ``warn`` or ``skip``.
    """
    if check == "skip":
        return {
            "ok": True,
            "planned": False,
            "lines": ["VRAM plan skipped (ollama_vram_check: skip)"],
            "too_big": [],
        }
    if float(budget_gb) > 0:
        vram, gpus, source = int(float(budget_gb) * GIB), 1, "ollama_vram_budget_gb"
    else:
        totals = parse_nvidia_smi_memory(smi_lines or [])
        if not totals:
            return {
                "ok": True,
                "planned": False,
                "lines": [
                    "VRAM plan skipped: no NVIDIA GPU answered nvidia-smi and "
                    "ollama_vram_budget_gb is 0 (set it to plan for a card this host lacks)"
                ],
                "too_big": [],
            }
        count = len(totals)
        vram, gpus = sum(totals), count
        source = f"nvidia-smi, {count} GPU{'s' if count > 1 else ''}"
    plan = plan_vram(
        models,
        list(installed or []),
        vram=vram,
        gpus=gpus,
        vram_source=source,
        reserved=int(float(reserved_gb) * GIB),
        settings=PlanSettings(
            context_length=int(context_length),
            num_parallel=int(num_parallel),
            kv_cache_type=str(kv_cache_type),
            flash_attention=bool(flash_attention),
            max_loaded_models=int(max_loaded_models),
        ),
    )
    lines = plan.lines()
    if plan.too_big:
        lines.append(
            "ollama_vram_check is warn: going on anyway"
            if check == "warn"
            else "Declare a smaller model or quantization, lower ollama_context_length or "
            "ollama_num_parallel, use ollama_kv_cache_type q8_0, or set ollama_vram_check: warn "
            "to deploy it anyway (the plan is an estimate, docs/ollama-role.md)."
        )
    return {
        "ok": not (plan.too_big and check == "enforce"),
        "planned": True,
        "lines": lines,
        "too_big": [e.name for e in plan.too_big],
    }

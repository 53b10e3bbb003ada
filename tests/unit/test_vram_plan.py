"""The VRAM planner of role ``ollama`` (ai_local_core.vram_plan) for an RTX 3060 (12 GiB).

nvidia-smi reports the card's memory.total as 12288 MiB. The model sets are the services'
defaults (llama3.1:8b for completion and translation, llava:7b for describe) with the role's
defaults, and the production example's inventory as it is in this repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ai_local_core.vram_plan import (
    GIB,
    KNOWN_MODELS,
    PlanSettings,
    known_model,
    normalize_name,
    parse_nvidia_smi_memory,
    plan_vram,
    role_plan,
)

from tests.fakes.ollama_standin.standin_store import ModelName, registry_size

REPO = Path(__file__).resolve().parents[2]
RTX_3060 = ["12288"]  # nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits
DEFAULT_MODELS = ["llama3.1:8b", "llava:7b"]


def example_vars() -> dict[str, Any]:
    """inventories/production.example: group_vars/llm_nodes, then host_vars/llm-node."""
    base = REPO / "inventories/production.example"
    merged: dict[str, Any] = {}
    for path in (base / "group_vars/llm_nodes/vars.yml", base / "host_vars/llm-node.yml"):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def example_plan(**overrides: Any) -> dict[str, Any]:
    v = {**example_vars(), **overrides}
    return role_plan(
        [m["name"] for m in v["ollama_models"] if m.get("state", "present") == "present"],
        [],
        smi_lines=RTX_3060,
        reserved_gb=float(v.get("ollama_vram_reserved_gb", 0)),
        context_length=int(v.get("ollama_context_length", 0)),
        num_parallel=int(v.get("ollama_num_parallel", 1)),
        kv_cache_type=str(v.get("ollama_kv_cache_type", "f16")),
        max_loaded_models=int(v.get("ollama_max_loaded_models", 1)),
    )


def test_rtx_3060_default_models_fit_alone_but_swap_one_at_a_time() -> None:
    # The role's defaults: context 0 (Ollama picks 4096 under 24 GiB), f16, one loaded model.
    got = role_plan(DEFAULT_MODELS, [], smi_lines=RTX_3060)
    assert got["ok"] and got["planned"] and got["too_big"] == []
    lines = got["lines"]
    assert lines[0].startswith(
        "VRAM plan (estimates, see docs/ollama-role.md): 12.00 GiB (nvidia-smi, 1 GPU) - 0.25 "
        "driver - 0.00 reserved (ollama_vram_reserved_gb) = 11.75 GiB for Ollama; context 4096"
    )
    assert lines[1] == (
        "llama3.1:8b: 5.80 GiB = weights 4.56 (size table) + KV cache 0.50 + compute 0.29 + "
        "runner 0.45: fits alone"
    )
    assert lines[2].startswith("llava:7b: 5.61 GiB") and lines[2].endswith("fits alone")
    # Together they would fit (11.41 of 11.75 GiB), but only one is loaded at a time.
    assert lines[3] == (
        "swap: ollama_max_loaded_models 1 keeps at most 1 of llama3.1:8b + llava:7b loaded: a "
        "request for another one unloads one first (all of them need 11.41 GiB: they would fit "
        "with ollama_max_loaded_models 2)"
    )
    assert lines[-1] == "verdict: every declared model fits alone; the combinations above swap"


def test_rtx_3060_production_example_does_not_swap() -> None:
    v = example_vars()
    # The example's choice (docs/ollama-role.md, "VRAM budget"): both models resident.
    assert [m["name"] for m in v["ollama_models"]] == DEFAULT_MODELS
    assert v["ai_services_vision_model"] == "llava:7b"
    assert v["ai_services_completion_model"] == v["ai_services_translation_model"] == "llama3.1:8b"
    got = example_plan()
    assert got["ok"]
    assert "fit together: llama3.1:8b + llava:7b (10.94 GiB, 0.81 spare)" in got["lines"]
    assert not any(line.startswith("swap") for line in got["lines"])
    assert got["lines"][-1] == "verdict: nothing swaps, all 2 fit and stay loaded together"


def test_rtx_3060_the_old_example_8k_context_swaps_on_describe_then_translate() -> None:
    # Context 8192 with a q8_0 cache and two loaded models: together just over the budget.
    got = example_plan(ollama_context_length=8192, ollama_max_loaded_models=2)
    assert got["ok"]
    assert (
        "swap: llama3.1:8b + llava:7b need 11.99 GiB together, Ollama unloads one to load the other"
        in got["lines"]
    )
    assert (
        got["lines"][-1] == "verdict: every declared model fits alone; the combinations above swap"
    )


def test_blip_on_the_gpu_beside_the_8b_model() -> None:
    # The alternative the docs describe: BLIP in the services (1.5 GiB), one Ollama model, 8k.
    got = role_plan(
        ["llama3.1:8b"],
        [],
        smi_lines=RTX_3060,
        reserved_gb=1.5,
        context_length=8192,
        kv_cache_type="q8_0",
    )
    assert "- 1.50 reserved (ollama_vram_reserved_gb) = 10.25 GiB for Ollama" in got["lines"][0]
    assert got["lines"][1].startswith("llama3.1:8b: 6.09 GiB")
    assert got["lines"][-1] == "verdict: nothing swaps, llama3.1:8b fits"


def test_a_model_too_big_for_the_card_fails_naming_model_estimate_and_vram() -> None:
    installed = [
        {"name": "llama3.1:70b", "size": 42_500_000_000, "details": {"parameter_size": "70.6B"}}
    ]
    got = role_plan(["llama3.1:8b", "llama3.1:70b"], installed, smi_lines=RTX_3060)
    assert not got["ok"] and got["too_big"] == ["llama3.1:70b"]
    text = "\n".join(got["lines"])
    assert "llama3.1:70b cannot fit: it needs about" in text
    assert "weights 39.58" in text
    assert "Ollama has 11.75 GiB of VRAM (12.00 GiB nvidia-smi, 1 GPU)" in text
    assert "guessed from 70.6B parameters" in text
    # The model that fits is still planned; the big one is left out of the combinations.
    assert "llama3.1:8b: 5.80 GiB" in text and "fit together" not in text
    # warn: the same plan, the play goes on.
    warned = role_plan(["llama3.1:70b"], installed, smi_lines=RTX_3060, check="warn")
    assert warned["ok"] and warned["lines"][-1] == "ollama_vram_check is warn: going on anyway"


def test_three_models_two_loaded_report_the_pairs_that_fit_and_swap() -> None:
    got = role_plan(
        ["llama3.1:8b", "llava:7b", "qwen2.5:3b"],
        [],
        smi_lines=RTX_3060,
        context_length=4096,
        kv_cache_type="q8_0",
        max_loaded_models=3,
    )
    lines = got["lines"]
    # All three need 13.6 GiB: the largest sets that fit are the pairs; the triple swaps.
    assert "fit together: llama3.1:8b + llava:7b (10.94 GiB, 0.81 spare)" in lines
    assert any(line.startswith("fit together: llama3.1:8b + qwen2.5:3b") for line in lines)
    assert any(line.startswith("swap: llama3.1:8b + llava:7b + qwen2.5:3b need") for line in lines)
    assert got["ok"]


def test_installed_sizes_win_over_the_table_and_unknown_models_wait_for_their_pull() -> None:
    installed = [{"name": "llama3.1:latest", "size": 5 * GIB, "details": {}}]
    plan = plan_vram(["LLaMA3.1", "nomic-embed-text"], installed, vram=12 * GIB)
    (estimate,) = plan.estimates
    assert estimate.name == "llama3.1:latest" and estimate.weights == 5 * GIB
    assert estimate.size_source == "Ollama" and estimate.shape_note is None  # the table's shape
    assert [u.name for u in plan.unplanned] == ["nomic-embed-text:latest"]


def test_kv_cache_formula() -> None:
    # llama3.1:8b: 2 x 32 layers x 8 KV heads x 128 x 2 bytes = 128 KiB a token in f16.
    kv = KNOWN_MODELS["llama3.1:8b"].architecture.kv_bytes_per_token_f16
    assert kv == 128 * 1024

    def cache(**settings: Any) -> int:
        plan = plan_vram(["llama3.1:8b"], [], vram=12 * GIB, settings=PlanSettings(**settings))
        return plan.estimates[0].kv_cache

    assert cache(context_length=8192) == 8192 * kv == GIB
    assert cache(context_length=8192, num_parallel=2) == 2 * GIB
    assert cache(context_length=8192, kv_cache_type="q8_0") == GIB * 34 // 64
    assert cache(context_length=8192, kv_cache_type="q4_0") == GIB * 18 // 64
    # Without flash attention Ollama keeps an f16 cache.
    assert cache(context_length=8192, kv_cache_type="q8_0", flash_attention=False) == GIB


@pytest.mark.parametrize(
    ("vram_gib", "context"), [(12, 4096), (23.9, 4096), (24, 32768), (48, 262144)]
)
def test_context_zero_is_chosen_by_vram_like_ollama(vram_gib: float, context: int) -> None:
    assert plan_vram([], [], vram=int(vram_gib * GIB)).context == context


def test_max_loaded_zero_is_three_per_gpu() -> None:
    got = role_plan(DEFAULT_MODELS, [], smi_lines=["12288", "12288"], max_loaded_models=0)
    assert "24.00 GiB (nvidia-smi, 2 GPUs) - 0.50 driver" in got["lines"][0]
    assert "up to 6 loaded" in got["lines"][0]


def test_no_gpu_skips_and_skip_turns_it_off() -> None:
    skipped = role_plan(DEFAULT_MODELS, [], smi_lines=[])
    assert skipped["ok"] and not skipped["planned"]
    assert skipped["lines"][0].startswith("VRAM plan skipped: no NVIDIA GPU answered nvidia-smi")
    assert role_plan(DEFAULT_MODELS, smi_lines=["[N/A]"])["planned"] is False
    off = role_plan(DEFAULT_MODELS, smi_lines=RTX_3060, check="skip")
    assert off == {
        "ok": True,
        "planned": False,
        "lines": ["VRAM plan skipped (ollama_vram_check: skip)"],
        "too_big": [],
    }
    # The override plans for a card the host lacks.
    assert role_plan(DEFAULT_MODELS, budget_gb=12)["lines"][0].startswith(
        "VRAM plan (estimates, see docs/ollama-role.md): 12.00 GiB (ollama_vram_budget_gb)"
    )


def test_parse_nvidia_smi_and_names() -> None:
    assert parse_nvidia_smi_memory(["12288", " 8192 ", "", "[N/A]"]) == [12 * GIB, 8 * GIB]
    assert normalize_name("Llava") == "llava:latest"
    assert normalize_name("registry.example:5000/team/model") == (
        "registry.example:5000/team/model:latest"
    )
    assert known_model("llava") == known_model("llava:7b") == KNOWN_MODELS["llava:7b"]
    assert known_model("registry.ollama.ai/library/tinyllama") == KNOWN_MODELS["tinyllama:1.1b"]


@pytest.mark.parametrize("name", sorted(KNOWN_MODELS))
def test_the_standin_reports_the_table_sizes(name: str) -> None:
    parsed = ModelName.parse(name)
    assert parsed is not None
    assert registry_size(parsed) == KNOWN_MODELS[name].size

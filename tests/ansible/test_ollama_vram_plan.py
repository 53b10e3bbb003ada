"""Role ``ollama``'s VRAM plan, as the role runs it (tasks/models.yml), against the stand-in.

Each case starts the Ollama stand-in on loopback with some models installed (it reports the
registry's sizes for them) and runs ``import_role: tasks_from: models.yml`` on localhost in
check mode, the way ``make models`` does: the plan is printed before any pull, and the play
stops there only when one declared model cannot fit. Nothing on this machine changes (check
mode; the GPU memory comes from ``ollama_vram_budget_gb`` or, without it, from an absent
``nvidia-smi``). The verdicts themselves are unit-tested in tests/unit/test_vram_plan.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ansible.local_play import run_role_tasks
from tests.fixtures.ollama import running_standin
from tests.molecule_support import parse_recap


def run_models(
    tmp_path: Path, variables: dict[str, Any], smi_dir: Path | None = None
) -> tuple[int, str]:
    return run_role_tasks(tmp_path, "ollama", "models.yml", variables, check=True, smi_dir=smi_dir)


@pytest.fixture
def standin_host(tmp_path: Path) -> Any:
    # llama3.1:8b and llava:7b installed (sizes from the stand-in), qwen2.5:7b still to pull.
    with running_standin(tmp_path / "standin", models=["llama3.1:8b", "llava:7b"]) as standin:
        yield standin.ollama_host


def test_plan_is_printed_before_the_pull_with_the_standins_sizes(
    tmp_path: Path, standin_host: str
) -> None:
    rc, out = run_models(
        tmp_path,
        {
            "ollama_host": standin_host,
            "ollama_models": [
                {"name": "llama3.1:8b"},
                {"name": "llava:7b"},
                {"name": "qwen2.5:7b"},
            ],
            "ollama_vram_budget_gb": 12,
            "ollama_context_length": 4096,
            "ollama_kv_cache_type": "q8_0",
            "ollama_max_loaded_models": 2,
        },
    )
    assert rc == 0, out[-4000:]
    assert "12.00 GiB (ollama_vram_budget_gb)" in out
    assert "llama3.1:8b: 5.56 GiB = weights 4.56 (Ollama)" in out
    assert "llava:7b: 5.38 GiB = weights 4.38 (Ollama)" in out
    # Not pulled yet: the size table's figure.
    assert "qwen2.5:7b: 5.24 GiB = weights 4.38 (size table)" in out
    assert "fit together: llama3.1:8b + llava:7b (10.94 GiB, 0.81 spare)" in out
    assert "swap: llama3.1:8b + qwen2.5:7b need" not in out
    # The plan comes before the pull (check mode: "would pull").
    assert out.index("Check the VRAM budget") < out.index("would pull: qwen2.5:7b")


def test_a_model_that_cannot_fit_stops_before_any_pull(tmp_path: Path, standin_host: str) -> None:
    rc, out = run_models(
        tmp_path,
        {
            "ollama_host": standin_host,
            "ollama_models": [{"name": "llama3.1:8b"}, {"name": "qwen2.5:14b"}],
            "ollama_vram_budget_gb": 8,
        },
    )
    assert rc != 0, out[-4000:]
    assert "qwen2.5:14b cannot fit: it needs about 9.94 GiB" in out
    assert "Ollama has 7.75 GiB of VRAM (8.00 GiB ollama_vram_budget_gb)" in out
    assert "would pull" not in out
    recap = parse_recap(out)["localhost"]
    assert recap.failed == 1


def test_warn_goes_on_and_no_gpu_skips_the_plan(tmp_path: Path, standin_host: str) -> None:
    models = [{"name": "llama3.1:8b"}, {"name": "qwen2.5:14b"}]
    rc, out = run_models(
        tmp_path / "warn",
        {
            "ollama_host": standin_host,
            "ollama_models": models,
            "ollama_vram_budget_gb": 8,
            "ollama_vram_check": "warn",
            # Role ai_services' BLIP on the GPU, two workers: ollama_vram_reserved_gb's default
            # leaves 1.5 GiB for each.
            "ai_services_describe_backend": "blip",
            "ai_services_vision": True,
            "ai_services_gpu": True,
            "ai_services_torch_variant": "cu124",
            "ai_services_workers": 2,
        },
    )
    assert rc == 0, out[-4000:]
    assert "- 3.00 reserved (ollama_vram_reserved_gb) = 4.75 GiB for Ollama" in out
    assert "ollama_vram_check is warn: going on anyway" in out
    rc, out = run_models(tmp_path / "nogpu", {"ollama_host": standin_host, "ollama_models": models})
    assert rc == 0, out[-4000:]
    assert "VRAM plan skipped: no NVIDIA GPU answered nvidia-smi" in out


def test_budget_0_detects_the_vram_through_gpu_facts(tmp_path: Path, standin_host: str) -> None:
    # A fake nvidia-smi answering the one query of ai_local_core.node.gpu_facts like an RTX 3060.
    smi_dir = tmp_path / "smi"
    smi_dir.mkdir()
    smi = smi_dir / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$(dirname "$0")/calls"\n'
        "echo '0, NVIDIA GeForce RTX 3060, GPU-5f3c1a2b, 570.133.07, 12288, 1, 13.47, 170.00,"
        " 38, Enabled, P8, 0'\n"
    )
    smi.chmod(0o755)
    rc, out = run_models(
        tmp_path / "play",
        {
            "ollama_host": standin_host,
            "ollama_models": [{"name": "llama3.1:8b"}, {"name": "llava:7b"}],
            "ollama_context_length": 4096,
            "ollama_kv_cache_type": "q8_0",
            "ollama_max_loaded_models": 2,
        },
        smi_dir=smi_dir,
    )
    assert rc == 0, out[-4000:]
    assert "12.00 GiB (nvidia-smi, 1 GPU)" in out
    assert "fit together: llama3.1:8b + llava:7b (10.94 GiB, 0.81 spare)" in out
    # One nvidia-smi call, the module's query (check mode: the module is read-only).
    calls = (smi_dir / "calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("--query-gpu=index,name,uuid,")

"""Role ``ollama``'s GPU offload check after the preload (tasks/verify_gpu.yml), on the stand-in.

The Ollama stand-in reports each loaded model's ``size_vram`` as ``OLLAMA_STANDIN_VRAM_SHARE`` x
``size`` (default: wholly in VRAM). The check reads ``/api/ps`` and stops the play with a diagnosis
when the preload model is not wholly in VRAM. It runs here on localhost, first on its own (the
task file, the way tasks/models.yml includes it), then through tasks/models.yml in check mode to
prove ``ollama_verify_gpu_offload`` (auto/true/false) decides whether it runs. Nothing on this
machine changes: the check only reads, and models.yml runs in check mode.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.ansible.local_play import run_role_tasks
from tests.fixtures.ollama import OllamaStandIn, running_standin
from tests.molecule_support import parse_recap

MODEL = "llama3.1:8b"


def load(standin: OllamaStandIn, model: str = MODEL) -> None:
    """Load ``model`` the way the role's preload does (a generate without a prompt)."""
    request = urllib.request.Request(
        f"{standin.url}/api/generate",
        data=json.dumps({"model": model, "stream": False}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["done_reason"] == "load"


def verify_vars(standin: OllamaStandIn) -> dict[str, Any]:
    return {
        "ollama_host": standin.ollama_host,
        "ollama_preload_model": MODEL,
        "ollama_context_length": 8192,
        "ollama_num_parallel": 2,
    }


def test_full_offload_passes_without_a_change(tmp_path: Path) -> None:
    with running_standin(tmp_path / "standin", models=[MODEL]) as standin:
        load(standin)
        rc, out = run_role_tasks(
            tmp_path / "play", "ollama", "verify_gpu.yml", verify_vars(standin)
        )
    assert rc == 0, out[-4000:]
    assert f"{MODEL} is wholly in VRAM (4.56 GiB)" in out
    recap = parse_recap(out)["localhost"]
    assert (recap.ok, recap.changed, recap.failed) == (2, 0, 0)


@pytest.mark.parametrize("check", [False, True], ids=["run", "check-mode"])
def test_partial_offload_fails_with_a_diagnosis(tmp_path: Path, check: bool) -> None:
    env = {"OLLAMA_STANDIN_VRAM_SHARE": "0.625"}
    with running_standin(tmp_path / "standin", models=[MODEL], env=env) as standin:
        load(standin)
        rc, out = run_role_tasks(
            tmp_path / "play", "ollama", "verify_gpu.yml", verify_vars(standin), check=check
        )
    assert rc != 0, out[-4000:]
    recap = parse_recap(out)["localhost"]
    assert (recap.ok, recap.changed, recap.failed) == (1, 0, 1)
    # The failure's message on one line (ansible-core's [ERROR] summary).
    (msg,) = [line for line in out.splitlines() if line.startswith("[ERROR]: Task failed:")]
    for fragment in (
        f"{MODEL} runs partly on the CPU: 62% in VRAM, 38% on the CPU",
        "(2.85 of 4.56 GiB in VRAM, /api/ps)",
        f"Loaded now: {MODEL} (62% in VRAM).",
        'nvidia-smi fails or says "Driver/library version mismatch"; reboot the host.',
        "nvidia_uvm is not loaded",
        "ollama_context_length 8192",
        "OLLAMA_NUM_PARALLEL = ollama_num_parallel 2",
        "journalctl -u ollama | grep -i -E 'cuda|gpu|offload'; ollama ps.",
        "ollama_verify_gpu_offload: false",
    ):
        assert fragment in msg, msg


def test_a_model_not_loaded_is_not_judged(tmp_path: Path) -> None:
    env = {"OLLAMA_STANDIN_VRAM_SHARE": "0"}
    with running_standin(tmp_path / "standin", models=[MODEL], env=env) as standin:
        rc, out = run_role_tasks(
            tmp_path / "play", "ollama", "verify_gpu.yml", verify_vars(standin), check=True
        )
    assert rc == 0, out[-4000:]
    assert f"{MODEL} is not loaded now" in out


@pytest.fixture
def partial_standin(tmp_path: Path) -> Any:
    """The preload model loaded, only 62.5 % of it in VRAM."""
    env = {"OLLAMA_STANDIN_VRAM_SHARE": "0.625"}
    with running_standin(tmp_path / "standin", models=[MODEL], env=env) as standin:
        load(standin)
        yield standin


def fake_nvidia_smi(directory: Path) -> Path:
    """An nvidia-smi that answers ai_local_core.node.gpu_facts' query like an RTX 3060."""
    directory.mkdir(parents=True)
    smi = directory / "nvidia-smi"
    smi.write_text(
        "#!/bin/sh\n"
        "echo '0, NVIDIA GeForce RTX 3060, GPU-5f3c1a2b, 570.133.07, 12288, 1, 13.47, 170.00,"
        " 38, Enabled, P8, 0'\n"
    )
    smi.chmod(0o755)
    return directory


@pytest.mark.parametrize(
    ("policy", "gpu", "runs"),
    [
        ("true", False, True),
        ("false", True, False),
        ("auto", False, False),  # no nvidia-smi, no PCI read (tasks/gpu.yml not run): no GPU
        ("auto", True, True),  # nvidia-smi answers: a GPU is expected
    ],
)
def test_the_role_runs_the_check_when_a_gpu_is_expected(
    tmp_path: Path, partial_standin: OllamaStandIn, policy: str, gpu: bool, runs: bool
) -> None:
    variables = {
        **verify_vars(partial_standin),
        "ollama_models": [{"name": MODEL}],
        "ollama_vram_check": "warn",
        "ollama_verify_gpu_offload": policy,
    }
    smi_dir = fake_nvidia_smi(tmp_path / "smi") if gpu else None
    rc, out = run_role_tasks(
        tmp_path / "play", "ollama", "models.yml", variables, check=True, smi_dir=smi_dir
    )
    if runs:
        assert rc != 0, out[-4000:]
        assert f"{MODEL} runs partly on the CPU: 62% in VRAM, 38% on the CPU" in out
        assert parse_recap(out)["localhost"].failed == 1
    else:
        assert rc == 0, out[-4000:]
        assert "runs partly on the CPU" not in out
        # The include is the check's only cost where no GPU is expected: one skipped task.
        assert "Read where the loaded models sit" not in out
        assert "TASK [ollama : Verify that the preload model runs on the GPU]" in out

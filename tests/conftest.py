"""Shared pytest fixtures.

Ollama stand-in (``tests/fakes/ollama_standin``, a real HTTP server on loopback):

* ``ollama_standin`` - the session's shared stand-in, reset (faults, request log,
  loaded models) before each test. Its preloaded models (``DEFAULT_MODELS``) must
  not be deleted; pull/delete other names freely.
* ``ollama_standin_factory`` - ``factory(env={...}, models=[...])`` starts a private
  stand-in (e.g. with ``OLLAMA_STANDIN_REQUIRE_BEARER``); stopped after the test.
* ``ollama_settings`` - :class:`ai_local_core.config.Settings` pointing at the shared
  stand-in with fast retries and short timeouts.
* ``standin_env`` - sets the environment (monkeypatch) so that in-process CLI
  ``main()`` calls and ``load_settings()`` talk to the shared stand-in.

Every test runs without inherited ``AI_LOCAL_CORE_*`` / ``OLLAMA_*`` variables, and with the
Hugging Face hub offline (``HF_HUB_OFFLINE=1``, set before anything imports transformers): the
tests build their models locally, and a hub name must fail at once, not after the hub client's
connection retries (46 s in CI).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# huggingface_hub reads these when it is first imported (tests/integration imports the vision
# backend before tests/vision runs): set them before any test module is collected.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest
from ai_local_core.config import Settings, load_settings

from tests.fixtures.ollama import OllamaStandIn, start_standin

StandInFactory = Callable[..., OllamaStandIn]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("AI_LOCAL_CORE_", "OLLAMA_", "_AI_LOCAL_CORE_")):
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def _shared_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OllamaStandIn]:
    standin = start_standin(tmp_path_factory.mktemp("ollama-standin"))
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def ollama_standin(_shared_standin: OllamaStandIn) -> OllamaStandIn:
    if _shared_standin.process.poll() is not None:
        pytest.fail(f"the shared Ollama stand-in died:\n{_shared_standin.logs()}")
    _shared_standin.reset()
    return _shared_standin


@pytest.fixture
def ollama_standin_factory(tmp_path: Path) -> Iterator[StandInFactory]:
    started: list[OllamaStandIn] = []

    def factory(**kwargs: Any) -> OllamaStandIn:
        workdir = tmp_path / f"standin-{len(started)}"
        standin = start_standin(workdir, **kwargs)
        started.append(standin)
        return standin

    try:
        yield factory
    finally:
        for standin in started:
            standin.stop()


@pytest.fixture
def standin_env(ollama_standin: OllamaStandIn, monkeypatch: pytest.MonkeyPatch) -> OllamaStandIn:
    for key, value in ollama_standin.client_env().items():
        if key.startswith("AI_LOCAL_CORE_"):
            monkeypatch.setenv(key, value)
    return ollama_standin


@pytest.fixture
def ollama_settings(standin_env: OllamaStandIn) -> Settings:
    return load_settings()

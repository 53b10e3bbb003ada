"""``/ready`` while the warm-up thread runs: it reads one immutable snapshot of the warm-up's
state (:class:`ai_local_core.api.services.WarmState`), never a dict another thread changes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from ai_local_core.api import create_app
from ai_local_core.api.services import Services, WarmState
from ai_local_core.config import load_settings
from ai_local_core.errors import BackendUnavailable

pytestmark = pytest.mark.timeout(30)


class _Client:
    base_url = "http://127.0.0.1:9"

    def ping(self, timeout: float = 2.0) -> bool:
        return True

    def close(self) -> None:
        return None


class _Backend:
    """A backend whose ``load`` fails or succeeds as told, optionally waiting for a gate."""

    model = "fake"

    def __init__(self) -> None:
        self.fail = True
        self.loaded = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def load(self) -> None:
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.fail:
            self.loaded = False
            raise BackendUnavailable("no model here")
        self.loaded = True


@pytest.fixture
def services() -> Iterator[tuple[Services, _Backend, _Backend]]:
    settings = load_settings(api={"warm_on_start": False})
    services = Services(settings, client=_Client())  # type: ignore[arg-type]
    image, translation = _Backend(), _Backend()
    services._image = image  # type: ignore[assignment]
    services._translation = translation  # type: ignore[assignment]
    yield services, image, translation
    services.close()


def test_a_snapshot_never_changes_after_it_was_read(
    services: tuple[Services, _Backend, _Backend],
) -> None:
    svc, image, _ = services
    before = svc.warm_state
    svc.warm_up()
    after = svc.warm_state
    assert dict(before.errors) == {} and before.warming is False
    assert set(after.errors) == {"image", "translation"}
    assert after.errors["image"] == "backend_unavailable: no model here"
    with pytest.raises(TypeError):
        after.errors["image"] = "changed"  # type: ignore[index]
    image.fail = False
    svc.warm_up()
    assert set(svc.warm_state.errors) == {"translation"}
    assert set(after.errors) == {"image", "translation"}  # the old snapshot as it was


def test_ready_during_the_warm_up_sees_one_consistent_state(
    services: tuple[Services, _Backend, _Backend],
) -> None:
    svc, image, _ = services
    svc.warm_up()  # both failed once
    image.gate = threading.Event()
    image.fail = False
    warming = svc.warm_up_in_background()
    try:
        assert image.entered.wait(5)
        ready, checks = svc.readiness()
        assert ready is False
        assert checks["warming_up"] is True
        assert checks["image"]["error"] == "backend_unavailable: no model here"
    finally:
        image.gate.set()
        warming.join(5)
    ready, checks = svc.readiness()
    assert "warming_up" not in checks
    assert checks["image"]["ok"] is True and "error" not in checks["image"]
    assert checks["translation"]["error"] == "backend_unavailable: no model here"


def test_ready_keeps_to_the_state_it_read_while_the_warm_up_replaces_it(
    services: tuple[Services, _Backend, _Backend], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic interleaving: right after ``/ready`` has read the warm-up's state, a
    whole warm-up runs and records two errors. The answer is built from the state that was
    read (no errors, not warming); a shared dict changed in place would show errors that
    were not there when the state was read, or raise while it is being resized."""
    svc, image, translation = services
    image.fail = translation.fail = False
    svc.warm_up()  # both loaded
    image.fail = translation.fail = True
    read = Services.warm_state

    def read_then_warm_up(self: Services) -> WarmState:
        snapshot: WarmState = read.fget(self)  # type: ignore[attr-defined]
        self.warm_up()  # the warm-up thread, between the read and the use
        assert len(read.fget(self).errors) == 2  # type: ignore[attr-defined]
        return snapshot

    monkeypatch.setattr(Services, "warm_state", property(read_then_warm_up))
    ready, checks = svc.readiness()
    assert ready is False  # the backends are read live: no longer loaded
    assert "error" not in checks["image"] and "error" not in checks["translation"]
    assert "warming_up" not in checks
    monkeypatch.undo()
    ready, checks = svc.readiness()
    assert checks["image"]["error"] == "backend_unavailable: no model here"
    assert checks["translation"]["error"] == "backend_unavailable: no model here"


def test_an_error_is_not_reported_once_the_backend_loaded(
    services: tuple[Services, _Backend, _Backend],
) -> None:
    svc, image, _ = services
    svc.warm_up()  # both failed
    image.loaded = True  # loaded since, e.g. by a request
    _, checks = svc.readiness()
    assert checks["image"]["ok"] is True and "error" not in checks["image"]
    assert checks["translation"]["error"] == "backend_unavailable: no model here"


def test_overlapping_warm_ups_keep_warming_until_the_last_ends(
    services: tuple[Services, _Backend, _Backend],
) -> None:
    svc, image, _ = services
    image.gate = threading.Event()
    first = svc.warm_up_in_background()
    assert image.entered.wait(5)
    image.entered.clear()
    second = svc.warm_up_in_background()
    assert image.entered.wait(5)
    assert svc.warm_state.warming is True
    image.gate.set()
    first.join(5)
    second.join(5)
    assert svc.warm_state.warming is False


def _checks(body: Any) -> dict[str, Any]:
    assert isinstance(body, dict)
    checks = body["checks"]
    assert isinstance(checks, dict)
    return checks


def test_ready_route_reports_the_snapshot(services: tuple[Services, _Backend, _Backend]) -> None:
    svc, image, translation = services
    image.fail = translation.fail = False
    svc.warm_up()
    app = create_app(svc.settings, services=svc, warm_up=False)
    response = app.test_client().get("/ready")
    assert response.status_code == 200
    checks = _checks(response.get_json())
    assert checks["image"]["ok"] is True and checks["translation"]["ok"] is True

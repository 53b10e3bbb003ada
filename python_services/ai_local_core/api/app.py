"""The Flask API server: ``create_app(settings)``.

Routes: ``GET /health`` (liveness), ``GET /ready`` (Ollama reachable, backends
loaded), ``POST /v1/complete``, ``POST /v1/describe``, ``POST /v1/translate`` and
``GET /metrics`` (Prometheus). Request bodies are the CLIs' JSON inputs and
successful answers are the CLIs' JSON outputs, so a CLI can hand its work to a
warm server and print the answer unchanged. Every error is JSON in the same
shape, ``{"success": false, "error": {"type", "message"}}``, with the error
class's HTTP status (400, 404, 405, 413, 502, 503, 504...): never an HTML page,
never a traceback. Work that runs longer than ``api.keepalive_after`` is answered
200 with whitespace bytes until its JSON object, which then carries any error
(:mod:`ai_local_core.api.keepalive`): check ``success``, not only the status.

Production serves this with gunicorn (``ai-local-core-api``); ``flask run`` or
``ai-local-core-api --dev`` is for development only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ai_local_core import __version__
from ai_local_core.api import keepalive
from ai_local_core.api.metrics import CONTENT_TYPE_LATEST, ApiMetrics
from ai_local_core.api.services import Services
from ai_local_core.cli._common import validate_input
from ai_local_core.config import Settings, load_settings
from ai_local_core.errors import AiLocalCoreError, InvalidInput
from ai_local_core.image.service import DescribeRequest, describe
from ai_local_core.translation.service import TranslateRequest, translate

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_HTTP_ERROR_TYPES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _error_body(error_type: str, message: str) -> dict[str, Any]:
    return {"success": False, "error": {"type": error_type, "message": message}}


def _error(error_type: str, message: str, status: int) -> Response:
    response = jsonify(_error_body(error_type, message))
    response.status_code = status
    return response


def _ok_body(result: dict[str, Any]) -> dict[str, Any]:
    result.pop("success", None)
    return {"success": True, **result}


def _ok(result: dict[str, Any]) -> Response:
    return jsonify(_ok_body(result))


def _endpoint() -> str:
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


#: A body over the cap is still read (and dropped) up to this size before the 413 goes out:
#: a server that answers and closes while the client is still sending makes the client see a
#: broken pipe instead of the JSON error.
_DRAIN_LIMIT = 64 * 1024 * 1024


def _drain_request_body(limit: int = _DRAIN_LIMIT) -> None:
    stream = request.environ.get("wsgi.input")
    remaining = request.content_length or 0
    if stream is None or remaining > limit:
        return
    while remaining > 0:
        chunk = stream.read(min(65536, remaining))
        if not chunk:
            return
        remaining -= len(chunk)


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or :class:`InvalidInput`."""
    raw = request.get_data(cache=False)  # honours MAX_CONTENT_LENGTH (413)
    if not raw.strip():
        raise InvalidInput("empty request body: expected a JSON object")
    try:
        value: Any = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidInput("request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"request body must be a JSON object, got {type(value).__name__}")
    return value


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    warm_up: bool | None = None,
) -> Flask:
    """Build the app. ``warm_up`` (default ``settings.api.warm_on_start``) loads the
    backends in a background thread right away."""
    settings = settings or load_settings()
    services = services or Services(settings)
    metrics = ApiMetrics()
    app = Flask("ai_local_core.api")
    app.config["MAX_CONTENT_LENGTH"] = settings.api.max_request_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ai_local_core"] = {"services": services, "metrics": metrics}

    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    def _count(endpoint: str, method: str, status: int, started: float | None) -> None:
        metrics.requests.labels(endpoint, method, str(status)).inc()
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    @app.after_request
    def _record(response: Response) -> Response:
        if not g.get("counted_later"):
            _count(_endpoint(), request.method, response.status_code, g.get("started"))
        return response

    def _failure(exc: BaseException, endpoint: str) -> tuple[str, str, int]:
        """Type, message and status of a failed request; counted and logged here."""
        if isinstance(exc, AiLocalCoreError):
            if exc.http_status >= 500:
                metrics.backend_errors.labels(endpoint, exc.error_type).inc()
                logger.warning("%s failed: %s: %s", endpoint, exc.error_type, exc.message)
            return exc.error_type, exc.message, exc.http_status
        metrics.backend_errors.labels(endpoint, "internal_error").inc()
        logger.error("unexpected error on %s", endpoint, exc_info=exc)
        return "internal_error", f"internal error ({type(exc).__name__})", 500

    @app.errorhandler(AiLocalCoreError)
    def _library_error(exc: AiLocalCoreError) -> Response:
        return _error(*_failure(exc, _endpoint()))

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 413:
            _drain_request_body()
        response = _error(
            _HTTP_ERROR_TYPES.get(status, "http_error"), exc.description or exc.name, status
        )
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        return _error(*_failure(exc, _endpoint()))

    def _answer(work: Callable[[], dict[str, Any]]) -> Response:
        """Run ``work`` (no request context in it); answer as usual when it ends within
        ``api.keepalive_after``, else commit to 200 and keep the connection alive
        (:mod:`ai_local_core.api.keepalive`) until its JSON object, error or success."""
        future = keepalive.start(work, name=f"work {request.path}")
        if keepalive.finished_within(future, settings.api.keepalive_after):
            return _ok(future.result())  # an error goes to the error handlers above
        endpoint, method, started = _endpoint(), request.method, g.get("started")
        g.counted_later = True

        def final(done: Future[dict[str, Any]]) -> bytes:
            error = done.exception()
            if error is None:
                body, status = _ok_body(done.result()), 200
            else:
                error_type, message, status = _failure(error, endpoint)
                body = _error_body(error_type, message)
            # The status the answer would have had without the keep-alive (the wire says 200).
            _count(endpoint, method, status, started)
            return app.json.dumps(body).encode() + b"\n"

        def aborted() -> None:
            _count(endpoint, method, 499, started)  # the client went away (nginx's 499)

        interval = settings.api.keepalive_interval
        response = Response(
            keepalive.body(future, interval, final, aborted), mimetype="application/json"
        )
        response.headers["X-Accel-Buffering"] = "no"  # nginx: pass each byte on at once
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/health")
    def health() -> Response:
        return jsonify({"status": "ok", "version": __version__})

    @app.get("/ready")
    def ready() -> Response:
        is_ready, checks = services.readiness()
        response = jsonify({"ready": is_ready, "checks": checks})
        response.status_code = 200 if is_ready else 503
        return response

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.render(), mimetype=CONTENT_TYPE_LATEST)

    @app.post("/v1/complete")
    def v1_complete() -> Response:
        from ai_local_core.cli.complete import complete

        payload = _json_object()

        def work() -> dict[str, Any]:
            with services.slot():
                result = dict(complete(payload, settings))
            tps = result.get("tokens_per_second")
            if isinstance(tps, (int, float)) and tps > 0:
                metrics.completion_tps.observe(tps)
            usage = result.get("usage")
            if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                metrics.completion_tokens.inc(usage["completion_tokens"])
            return result

        return _answer(work)

    @app.post("/v1/describe")
    def v1_describe() -> Response:
        describe_request = validate_input(DescribeRequest, _json_object())

        def work() -> dict[str, Any]:
            # The request slot is taken only once the image is fetched and decoded.
            return describe(
                describe_request,
                services.image_backend,
                limits=services.image_limits,
                default_max_length=settings.image.default_max_length,
                fetch_slot=services.fetch_slot,
                slot=services.slot,
            )

        return _answer(work)

    @app.post("/v1/translate")
    def v1_translate() -> Response:
        translate_request = validate_input(TranslateRequest, _json_object())

        def work() -> dict[str, Any]:
            with services.slot():
                return translate(translate_request, services.translation_backend)

        return _answer(work)

    if settings.api.warm_on_start if warm_up is None else warm_up:
        services.warm_up_in_background()
    return app

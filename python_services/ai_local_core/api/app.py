"""The Flask API server: ``create_app(settings)``.

Routes: ``GET /health`` (liveness), ``GET /ready`` (Ollama reachable, backends
loaded), ``POST /v1/complete``, ``POST /v1/describe``, ``POST /v1/translate`` and
``GET /metrics`` (Prometheus). Request bodies are the CLIs' JSON inputs and
successful answers are the CLIs' JSON outputs, so a CLI can hand its work to a
warm server and print the answer unchanged. Every error is JSON in the same
shape, ``{"success": false, "error": {"type", "message"}}``, with the error
class's HTTP status (400, 404, 405, 413, 502, 503, 504...): never an HTML page,
never a traceback.

Production serves this with gunicorn (``ai-local-core-api``); ``flask run`` or
``ai-local-core-api --dev`` is for development only.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ai_local_core import __version__
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


def _error(error_type: str, message: str, status: int) -> Response:
    response = jsonify({"success": False, "error": {"type": error_type, "message": message}})
    response.status_code = status
    return response


def _ok(result: dict[str, Any]) -> Response:
    result.pop("success", None)
    return jsonify({"success": True, **result})


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

    @app.after_request
    def _record(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.requests.labels(endpoint, request.method, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.errorhandler(AiLocalCoreError)
    def _library_error(exc: AiLocalCoreError) -> Response:
        endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        if exc.http_status >= 500:
            metrics.backend_errors.labels(endpoint, exc.error_type).inc()
            logger.warning("%s failed: %s: %s", endpoint, exc.error_type, exc.message)
        return _error(exc.error_type, exc.message, exc.http_status)

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
        endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.backend_errors.labels(endpoint, "internal_error").inc()
        logger.error("unexpected error on %s", endpoint, exc_info=exc)
        return _error("internal_error", f"internal error ({type(exc).__name__})", 500)

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
        with services.slot():
            result = dict(complete(payload, settings))
        tps = result.get("tokens_per_second")
        if isinstance(tps, (int, float)) and tps > 0:
            metrics.completion_tps.observe(tps)
        usage = result.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            metrics.completion_tokens.inc(usage["completion_tokens"])
        return _ok(result)

    @app.post("/v1/describe")
    def v1_describe() -> Response:
        describe_request = validate_input(DescribeRequest, _json_object())
        with services.slot():
            result = describe(
                describe_request,
                services.image_backend,
                limits=services.image_limits,
                default_max_length=settings.image.default_max_length,
            )
        return _ok(result)

    @app.post("/v1/translate")
    def v1_translate() -> Response:
        translate_request = validate_input(TranslateRequest, _json_object())
        with services.slot():
            result = translate(translate_request, services.translation_backend)
        return _ok(result)

    if settings.api.warm_on_start if warm_up is None else warm_up:
        services.warm_up_in_background()
    return app

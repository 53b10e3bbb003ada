"""A typed, retrying client for Ollama's HTTP API: a thin layer over ``ollama.Client``.

The official package builds the requests, parses the NDJSON streams (lines split
across chunks included) and validates the answers. This layer adds only what it
lacks: finite connect/read/write timeouts (a per-call ``timeout`` sets the read
timeout), credentials from the URL (``user:pass@`` becomes basic auth; the official
client drops it) or the configuration (a bearer token or its file), the project's
errors (:mod:`ai_local_core.errors`, with the upstream status and
``Retry-After``), the project's result models, retries, and a stream that ends
without its final message reported as an error.

Retries (exponential backoff with jitter, bounded by attempts and total time; a
server's ``Retry-After`` wins, capped) happen only before Ollama starts answering,
and only where the request cannot have reached Ollama's handler twice:

* any request: a refused or failed connect, a connect timeout, HTTP 429 and 503;
* ``GET`` (version, tags, ps) also: any other transport error before the answer
  (a reset, a read timeout) and a gateway's 502/504;
* anything else that may have reached Ollama's handler (a reset after the body was
  sent, a read timeout, 502, 504) is never repeated for a ``POST`` or ``DELETE``: a
  generation is not run twice, a repeated delete does not turn success into "model
  not found".

Once Ollama has answered with a success status nothing is retried, so a chunk of a
stream is never handed out twice. Generations (``generate``, ``chat``) always ask
Ollama to stream, also when the caller wants one result (the chunks are folded): the
read timeout then counts the silence between two chunks, not the whole answer.

What the official client raises (``ollama`` 0.6): a failed connect as the builtin
``ConnectionError`` (the ``httpx.ConnectError`` is its ``__context__``) or, in a
stream, as ``httpx.ConnectError``; other transport errors as the ``httpx`` exception;
an ``{"error": ...}`` stream line as ``ollama.ResponseError``. HTTP error statuses
never reach it: a response hook on its httpx client raises the project's error with
the status, body and ``Retry-After`` first.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from ai_local_core import __version__
from ai_local_core.errors import (
    AuthError,
    ConfigError,
    ConnectionFailed,
    InvalidInput,
    InvalidResponse,
    ModelNotFound,
    OllamaError,
    ServerBusy,
    Timeout,
)
from ai_local_core.ollama.models import (
    ChatMessage,
    ChatResponse,
    EmbedResponse,
    GenerateResponse,
    ModelInfo,
    PullProgress,
    RunningModel,
    ShowResponse,
)
from ai_local_core.ollama.urls import normalize_ollama_url

if TYPE_CHECKING:
    from ai_local_core.config import OllamaSettings, Settings

__all__ = ["DEFAULT_TIMEOUT", "OllamaClient", "ResponseStream", "RetryPolicy"]

logger = logging.getLogger("ai_local_core.ollama")

#: Finite defaults (seconds): connect, read (between two bytes), write, pool.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=5.0)

_T = TypeVar("_T", bound=BaseModel)
_R = TypeVar("_R")

#: Methods a request may be repeated with after it may have reached Ollama's handler.
_IDEMPOTENT = frozenset({"GET", "HEAD"})

#: Upstream statuses after which any request may be repeated: it was refused before
#: Ollama's handler ran it. A gateway's 502/504 may come after it did (the client repeats
#: only a GET then).
RETRYABLE_STATUSES: frozenset[int] = frozenset({429, 503})

_MAX_BODY_IN_MESSAGE = 300


def _short(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > _MAX_BODY_IN_MESSAGE:
        return text[:_MAX_BODY_IN_MESSAGE] + "..."
    return text


def error_from_message(message: str, *, status: int | None = None) -> OllamaError:
    """Map an ``{"error": message}`` (body or mid-stream line) to the right class."""
    lowered = message.lower()
    if status == 404 or ("not found" in lowered and "model" in lowered):
        return ModelNotFound(message, status=status)
    if "server busy" in lowered or "maximum pending requests" in lowered:
        return ServerBusy(message, status=status, retryable=status in RETRYABLE_STATUSES)
    return OllamaError(message, status=status)


def error_from_response(status: int, body: bytes | str, *, what: str = "request") -> OllamaError:
    """Map an HTTP error response (status >= 400) to the right :class:`OllamaError`."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message: str | None = None
    try:
        parsed: Any = json.loads(text) if text.strip() else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        err = parsed.get("error")
        if isinstance(err, str):
            message = err
        elif isinstance(err, dict) and isinstance(err.get("message"), str):
            message = err["message"]  # OpenAI-style error object from a gateway

    if status in (401, 403):
        if message is None and not text.strip() and status == 403:
            detail = (
                "403 Forbidden with an empty body: Ollama's Host/Origin check refused the "
                "request (behind a proxy or tunnel, rewrite the Host header to "
                "localhost:11434)"
            )
        else:
            detail = f"{status} {'Unauthorized' if status == 401 else 'Forbidden'}"
            if message or text.strip():
                detail += f": {_short(message or text)}"
        return AuthError(f"{what} rejected: {detail}", status=status)
    if status == 429:
        return ServerBusy(
            f"{what} rate-limited (429): {_short(message or text)}", status=status, retryable=True
        )
    if status == 503:
        return ServerBusy(
            message or f"server busy (503): {_short(text)}", status=status, retryable=True
        )
    if status == 504:
        return Timeout(f"gateway timeout (504): {_short(message or text)}", status=status)
    if status == 502:
        return ConnectionFailed(f"bad gateway (502): {_short(message or text)}", status=status)
    if status == 404:
        if message is not None:
            return ModelNotFound(message, status=status)
        return OllamaError(
            f"{what}: endpoint not found (404: {_short(text)}); is the URL pointing at Ollama?",
            status=status,
        )
    if message is not None:
        return error_from_message(message, status=status)
    # 429 and 503, the statuses any request may be repeated after, were answered above.
    return OllamaError(f"{what} failed with HTTP {status}: {_short(text)}", status=status)


@dataclass(frozen=True)
class RetryPolicy:
    """When to repeat a request: see the module docstring."""

    max_attempts: int = 3
    backoff_initial: float = 0.5
    backoff_max: float = 8.0
    max_total: float = 60.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigError("retries.max_attempts must be at least 1")
        if self.backoff_initial < 0 or self.backoff_max < 0 or self.max_total <= 0:
            raise ConfigError("retry delays must be positive")

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_attempts=1)


class _BackoffWait:
    """Exponential backoff with jitter; a server's Retry-After wins (capped)."""

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self._exp = wait_exponential_jitter(
            multiplier=policy.backoff_initial,
            max=policy.backoff_max,
            jitter=policy.backoff_initial,
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, float):
            return min(retry_after, self._policy.backoff_max)
        return float(self._exp(retry_state))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass
class _Attempt:
    """One try of one call, seen by the httpx hooks (through :data:`_ATTEMPT`)."""

    method: str
    what: str
    timeout: httpx.Timeout
    sent: bool = False  # the request left for the transport
    answered: bool = False  # a success status came back: never retried after this


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("ai_local_core_ollama_attempt", default=None)


def _images(images: Sequence[str] | None) -> list[bytes] | None:
    """Base64 images as bytes: the official client would read a string naming a file."""
    if not images:
        return None
    try:
        return [base64.b64decode(image, validate=True) for image in images]
    except (binascii.Error, ValueError, TypeError):
        raise InvalidInput("images must be base64-encoded") from None


def _format(format: str | Mapping[str, Any] | None) -> Any:
    """``format`` as given: "json" or a JSON schema (the official type lists only those)."""
    return dict(format) if isinstance(format, Mapping) else format


def _as_error(
    exc: BaseException, what: str, where: str, received: int | None = None
) -> OllamaError:
    """What the official client raised as the project's error (``received``: mid-stream)."""
    import ollama  # already imported by the client

    if isinstance(exc, OllamaError):
        return exc
    if isinstance(exc, ollama.ResponseError):  # an {"error": ...} line of a stream
        return error_from_message(
            str(exc.error), status=exc.status_code if exc.status_code > 0 else None
        )
    if isinstance(exc, ConnectionError) and isinstance(exc.__context__, httpx.ConnectError):
        exc = exc.__context__  # the official client's wrapping of a failed connect
    name = type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        return ConnectionFailed(
            f"{what}: cannot connect to Ollama at {where}: connect timeout", retryable=True
        )
    if isinstance(exc, (httpx.ConnectError, ConnectionError)):
        reason = str(exc) or name
        return ConnectionFailed(
            f"{what}: cannot connect to Ollama at {where}: {reason}", retryable=True
        )
    if isinstance(exc, httpx.TimeoutException):
        after = "" if received is None else f" after {received} messages"
        return Timeout(f"{what}: no data from Ollama at {where} within the timeout{after} ({name})")
    lost = "failed" if received is None else f"lost mid-stream after {received} messages"
    if isinstance(exc, httpx.TransportError):
        return ConnectionFailed(f"{what}: connection to Ollama at {where} {lost}: {name}: {exc}")
    if isinstance(exc, ValidationError):
        return InvalidResponse(
            f"{what}: unexpected response ({exc.error_count()} invalid field(s))"
        )
    return InvalidResponse(f"{what}: not Ollama's protocol: {name}: {exc}")


class ResponseStream(Generic[_T]):
    """Typed items of an open NDJSON response; closes it when exhausted or closed.

    Raises :class:`ConnectionFailed` if the connection breaks mid-stream,
    :class:`Timeout` after the read timeout's silence, :class:`InvalidResponse` if the
    stream ends before its final item, and the mapped :class:`OllamaError` for an
    ``{"error": ...}`` line.
    """

    def __init__(
        self,
        first: Any,
        rest: Iterator[Any],
        item_type: type[_T],
        *,
        what: str,
        where: str,
        is_final: Callable[[_T], bool],
    ) -> None:
        self._items: Iterator[Any] = itertools.chain((first,), rest)
        self._rest = rest
        self._item_type = item_type
        self._what = what
        self._where = where
        self._is_final = is_final
        self._finished = False
        #: Items handed to the caller so far.
        self.received = 0

    def __iter__(self) -> ResponseStream[_T]:
        return self

    def __next__(self) -> _T:
        try:
            raw = next(self._items)
            item = self._item_type.model_validate(raw.model_dump(exclude_none=True))
        except StopIteration:
            finished = self._finished
            self.close()
            if not finished:
                raise InvalidResponse(
                    f"{self._what}: stream ended after {self.received} messages "
                    "without its final message"
                ) from None
            raise
        except Exception as exc:
            self.close()
            error = _as_error(exc, self._what, self._where, self.received)
            if error is exc:
                raise
            raise error from exc
        self.received += 1
        self._finished = self._finished or self._is_final(item)
        return item

    def close(self) -> None:
        """Close the response; iterating further ends at once."""
        self._items, self._finished = iter(()), True
        close = getattr(self._rest, "close", None)  # the official stream is a generator
        if close is not None:
            close()

    def __enter__(self) -> ResponseStream[_T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _done(item: GenerateResponse | ChatResponse) -> bool:
    return item.done


def _pull_done(item: PullProgress) -> bool:
    return item.status == "success"


class _Version(BaseModel):
    version: str


class OllamaClient:
    """Synchronous Ollama client. Thread-safe; use as a context manager or ``close()``.

    ``base_url`` accepts everything ``OLLAMA_HOST`` accepts and defaults to it
    (then to ``http://127.0.0.1:11434``). Credentials in the URL
    (``http://user:pass@gateway``) become basic auth; ``basic_auth`` and ``token``
    set them explicitly (one of the two). ``timeout`` is a number of seconds or an
    :class:`httpx.Timeout`; it is always finite. ``transport`` is for tests.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        basic_auth: tuple[str, str] | None = None,
        token: str | None = None,
        timeout: httpx.Timeout | float | None = None,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        trust_env: bool = False,
        keep_alive: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        import ollama  # here, not at the top: ~50 ms that importing this package skips

        raw_url = base_url if base_url is not None else os.environ.get("OLLAMA_HOST", "")
        try:
            url = normalize_ollama_url(raw_url)
        except ValueError as exc:
            raise ConfigError(f"invalid Ollama URL: {exc}") from None
        split = urlsplit(url)
        if split.username is not None:
            if basic_auth is not None or token is not None:
                raise ConfigError("credentials both in the Ollama URL and as arguments")
            basic_auth = (unquote(split.username), unquote(split.password or ""))
            url = urlunsplit(split._replace(netloc=split.netloc.rsplit("@", 1)[1]))
        if basic_auth is not None and token is not None:
            raise ConfigError("use basic auth or a bearer token, not both")
        all_headers = {"User-Agent": f"ai-local-core/{__version__}"}
        all_headers.update(headers or {})
        auth: httpx.Auth | None = None
        if basic_auth is not None:
            auth = httpx.BasicAuth(*basic_auth)
        elif token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        # The official client adds OLLAMA_API_KEY (meant for ollama.com) when given no
        # Authorization: our credentials come from the URL or the configuration only.
        self._no_credentials = auth is None and not any(
            k.lower() == "authorization" for k in all_headers
        )
        self._user_agent = next(v for k, v in all_headers.items() if k.lower() == "user-agent")

        if timeout is None:
            timeout = DEFAULT_TIMEOUT
        elif not isinstance(timeout, httpx.Timeout):
            if not timeout > 0:
                raise ConfigError("timeout must be a positive number of seconds")
            timeout = httpx.Timeout(float(timeout))
        if None in (timeout.connect, timeout.read, timeout.write, timeout.pool):
            raise ConfigError("every timeout must be finite")

        self.base_url = url
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.keep_alive = keep_alive
        #: How the client waits between attempts (replaceable in tests).
        self.sleep: Callable[[float], None] = time.sleep
        self._ollama = ollama.Client(
            host=url,
            timeout=timeout,
            headers=all_headers,
            auth=auth,
            verify=verify,
            trust_env=trust_env,
            transport=transport,
            follow_redirects=False,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )

    @classmethod
    def from_settings(
        cls, settings: Settings | OllamaSettings | None = None, **overrides: Any
    ) -> OllamaClient:
        """A client configured from :mod:`ai_local_core.config` (loaded if not given)."""
        from ai_local_core.config import OllamaSettings, load_settings

        if isinstance(settings, OllamaSettings):
            section = settings
        else:
            section = (settings or load_settings()).ollama
        t = section.timeouts
        r = section.retries
        kwargs: dict[str, Any] = {
            "basic_auth": section.auth.basic,
            "token": section.auth.bearer,
            "timeout": httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool),
            "retry": RetryPolicy(
                max_attempts=r.max_attempts,
                backoff_initial=r.backoff_initial,
                backoff_max=r.backoff_max,
                max_total=r.max_total,
            ),
            "verify": section.verify_tls,
            "trust_env": section.trust_env,
            "keep_alive": section.keep_alive,
        }
        kwargs.update(overrides)
        return cls(section.url, **kwargs)

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        self._ollama.close()  # type: ignore[no-untyped-call]  # untyped in ollama 0.6

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OllamaClient({self.base_url!r})"

    # ------------------------------------------------------------------ httpx hooks

    def _on_request(self, request: httpx.Request) -> None:
        request.headers["User-Agent"] = self._user_agent
        if self._no_credentials:
            request.headers.pop("Authorization", None)
        attempt = _ATTEMPT.get()
        if attempt is not None:
            request.extensions["timeout"] = attempt.timeout.as_dict()
            attempt.sent = True

    def _on_response(self, response: httpx.Response) -> None:
        attempt = _ATTEMPT.get()
        if response.is_success:
            if attempt is not None:
                attempt.answered = True
            return
        try:
            body = response.read()
        except httpx.HTTPError:
            body = b""
        error = error_from_response(
            response.status_code, body, what=attempt.what if attempt else "request"
        )
        error.retry_after = _retry_after(response)
        raise error

    # ------------------------------------------------------------------ plumbing

    def _timeout_for(self, seconds: float | None) -> httpx.Timeout:
        if seconds is None:
            return self.timeout
        if not seconds > 0:
            raise InvalidInput("timeout must be a positive number of seconds")
        return httpx.Timeout(
            connect=min(self.timeout.connect or seconds, seconds),
            read=seconds,
            write=self.timeout.write,
            pool=self.timeout.pool,
        )

    @staticmethod
    def _may_repeat(error: OllamaError, attempt: _Attempt) -> bool:
        """The retry rule of the module docstring."""
        if attempt.answered:
            return False
        if error.retryable:  # never reached Ollama's handler: connect failed, 429, 503
            return True
        if attempt.method not in _IDEMPOTENT:
            return False
        return error.status in (502, 504) or (
            error.status is None and isinstance(error, (ConnectionFailed, Timeout))
        )

    def _call(
        self,
        method: str,
        what: str,
        fn: Callable[[], _R],
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> _R:
        """Run ``fn`` (one call of the official client) with the retry rule."""
        request_timeout = self._timeout_for(timeout)
        policy = retry or self.retry

        def attempt() -> _R:
            state = _Attempt(method=method, what=what, timeout=request_timeout)
            token = _ATTEMPT.set(state)
            started = time.monotonic()
            try:
                result = fn()
            except InvalidInput:
                raise
            except Exception as exc:
                if not state.sent and isinstance(exc, (ValueError, TypeError)):
                    # the official client refused to build the request
                    raise InvalidInput(f"{what}: invalid request: {exc}") from None
                error = _as_error(exc, what, self.base_url)
                error.retryable = self._may_repeat(error, state)
                if error is exc:
                    raise
                raise error from exc
            finally:
                _ATTEMPT.reset(token)
            logger.debug("%s %s in %.1f ms", method, what, (time.monotonic() - started) * 1000)
            return result

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "%s: attempt %d/%d failed (%s); retrying in %.2fs",
                what,
                state.attempt_number,
                policy.max_attempts,
                exc,
                sleep,
            )

        retrying = Retrying(
            stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(policy.max_total),
            wait=_BackoffWait(policy),
            retry=retry_if_exception(lambda e: isinstance(e, OllamaError) and e.retryable),
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except OllamaError as exc:
            exc.note_attempts(int(retrying.statistics.get("attempt_number", 1)))
            raise

    def _stream(
        self,
        what: str,
        open_stream: Callable[[], Iterator[Any]],
        item_type: type[_T],
        is_final: Callable[[_T], bool],
        timeout: float | None,
    ) -> ResponseStream[_T]:
        """Open a stream of the official client: retried until its first item arrived."""

        def first() -> tuple[Any, Iterator[Any]]:
            rest = open_stream()
            try:
                return next(rest), rest
            except StopIteration:
                raise InvalidResponse(
                    f"{what}: stream ended after 0 messages without its final message"
                ) from None

        head, rest = self._call("POST", what, first, timeout=timeout)
        return ResponseStream(
            head, rest, item_type, what=what, where=self.base_url, is_final=is_final
        )

    def _convert(self, model: type[_T], item: BaseModel, what: str, **extra: Any) -> _T:
        """The official client's typed answer as the project's model."""
        data = item.model_dump(by_alias=True, exclude_none=True)
        for key, value in extra.items():
            data.setdefault(key, data.get(value))
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InvalidResponse(
                f"{what}: unexpected response ({exc.error_count()} invalid field(s))"
            ) from None

    @staticmethod
    def _require_model(model: str) -> str:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInput("a model name is required")
        return model.strip()

    def _keep_alive(self, keep_alive: str | float | None) -> str | float | None:
        return keep_alive if keep_alive is not None else self.keep_alive

    # ------------------------------------------------------------------ API

    def version(self) -> str:
        """The server's version (``GET /api/version``)."""
        return self._version()

    def _version(self, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> str:
        # ollama 0.6 has no public call for /api/version: its generic typed request.
        answer = self._call(
            "GET",
            "version",
            lambda: self._ollama._request(_Version, "GET", "/api/version"),
            timeout=timeout,
            retry=retry,
        )
        return answer.version

    def ping(self, *, timeout: float = 2.0) -> bool:
        """True if Ollama answers ``/api/version`` right now (no retries)."""
        try:
            self._version(timeout=timeout, retry=RetryPolicy.none())
        except OllamaError:
            return False
        return True

    def list_models(self) -> list[ModelInfo]:
        """Local models (``GET /api/tags``)."""
        what = "list models"
        answer = self._call("GET", what, self._ollama.list)
        return [self._convert(ModelInfo, m, what, name="model") for m in answer.models]

    def ps(self) -> list[RunningModel]:
        """Models loaded in memory (``GET /api/ps``)."""
        answer = self._call("GET", "ps", self._ollama.ps)
        return [self._convert(RunningModel, m, "ps", name="model") for m in answer.models]

    def show(self, model: str) -> ShowResponse:
        """Details of one model (``POST /api/show``)."""
        model = self._require_model(model)
        what = f"show {model}"
        # Not self._ollama.show: ollama 0.6's ShowResponse requires "model_info", which
        # Ollama leaves out when empty. Its generic typed request, with our model.
        return self._call(
            "POST",
            what,
            lambda: self._ollama._request(ShowResponse, "POST", "/api/show", json={"model": model}),
        )

    def delete(self, model: str) -> None:
        """Remove a model (``DELETE /api/delete``); :class:`ModelNotFound` if absent."""
        model = self._require_model(model)
        self._call("DELETE", f"delete {model}", lambda: self._ollama.delete(model))

    def pull_model(
        self,
        model: str,
        *,
        progress: Callable[[PullProgress], None] | None = None,
        insecure: bool = False,
        timeout: float | None = None,
    ) -> PullProgress:
        """Pull a model, feeding each streamed status line to ``progress``.

        Returns the final ``success`` status; raises the mapped error otherwise
        (an unknown model gives ``pull model manifest: file does not exist``).
        """
        model = self._require_model(model)
        what = f"pull {model}"

        def open_stream() -> Iterator[Any]:
            return self._ollama.pull(model, insecure=insecure, stream=True)

        last = PullProgress()
        with self._stream(what, open_stream, PullProgress, _pull_done, timeout) as stream:
            for item in stream:
                last = item
                if progress is not None:
                    progress(item)
        return last

    @overload
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        images: Sequence[str] | None = None,
        keep_alive: str | float | None = None,
        raw: bool | None = None,
        timeout: float | None = None,
        stream: Literal[False] = False,
    ) -> GenerateResponse: ...

    @overload
    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        images: Sequence[str] | None = None,
        keep_alive: str | float | None = None,
        raw: bool | None = None,
        timeout: float | None = None,
        stream: Literal[True],
    ) -> ResponseStream[GenerateResponse]: ...

    def generate(
        self,
        model: str,
        prompt: str = "",
        *,
        system: str | None = None,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        images: Sequence[str] | None = None,
        keep_alive: str | float | None = None,
        raw: bool | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> GenerateResponse | ResponseStream[GenerateResponse]:
        """``POST /api/generate``, always streamed from Ollama (see the module docstring).

        With ``stream=True`` returns an open :class:`ResponseStream`, else the chunks
        folded into one result, which is what ``stream: false`` would have sent.
        """
        model = self._require_model(model)
        image_data = _images(images)
        # None leaves them out of the body (the official types say str and bool)
        given_system: Any = system
        given_raw: Any = raw

        def open_stream() -> Iterator[Any]:
            return self._ollama.generate(
                model,
                prompt,
                system=given_system,
                options=dict(options) if options else None,
                format=_format(format),
                images=image_data,
                keep_alive=self._keep_alive(keep_alive),
                raw=given_raw,
                stream=True,
            )

        what = f"generate with {model}"
        chunks = self._stream(what, open_stream, GenerateResponse, _done, timeout)
        if stream:
            return chunks
        with chunks:
            return GenerateResponse.from_stream(chunks)

    @overload
    def chat(
        self,
        model: str,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        keep_alive: str | float | None = None,
        timeout: float | None = None,
        stream: Literal[False] = False,
    ) -> ChatResponse: ...

    @overload
    def chat(
        self,
        model: str,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        keep_alive: str | float | None = None,
        timeout: float | None = None,
        stream: Literal[True],
    ) -> ResponseStream[ChatResponse]: ...

    def chat(
        self,
        model: str,
        messages: Sequence[ChatMessage | Mapping[str, Any]],
        *,
        options: Mapping[str, Any] | None = None,
        format: str | Mapping[str, Any] | None = None,
        keep_alive: str | float | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> ChatResponse | ResponseStream[ChatResponse]:
        """``POST /api/chat``, always streamed from Ollama (see the module docstring).

        With ``stream=True`` returns an open :class:`ResponseStream`, else the chunks
        folded into one result, which is what ``stream: false`` would have sent.
        """
        model = self._require_model(model)
        try:
            msgs = [
                m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in messages
            ]
        except ValidationError as exc:
            raise InvalidInput(f"invalid chat messages ({exc.error_count()} error(s))") from None
        bodies: list[dict[str, Any]] = []
        for m in msgs:
            body = m.model_dump(exclude_none=True)
            if m.images:
                body["images"] = _images(m.images)
            bodies.append(body)

        def open_stream() -> Iterator[Any]:
            return self._ollama.chat(
                model,
                bodies,
                options=dict(options) if options else None,
                format=_format(format),
                keep_alive=self._keep_alive(keep_alive),
                stream=True,
            )

        what = f"chat with {model}"
        chunks = self._stream(what, open_stream, ChatResponse, _done, timeout)
        if stream:
            return chunks
        with chunks:
            return ChatResponse.from_stream(chunks)

    def embed(
        self,
        model: str,
        input: str | Sequence[str],
        *,
        truncate: bool | None = None,
        options: Mapping[str, Any] | None = None,
        keep_alive: str | float | None = None,
        dimensions: int | None = None,
        timeout: float | None = None,
    ) -> EmbedResponse:
        """Embeddings of one text or a batch (``POST /api/embed``)."""
        model = self._require_model(model)
        what = f"embed with {model}"
        answer = self._call(
            "POST",
            what,
            lambda: self._ollama.embed(
                model,
                input if isinstance(input, str) else list(input),
                truncate=truncate,
                options=dict(options) if options else None,
                keep_alive=self._keep_alive(keep_alive),
                dimensions=dimensions,
            ),
            timeout=timeout,
        )
        return self._convert(EmbedResponse, answer, what)

"""A typed, retrying client for Ollama's HTTP API.

Why httpx and not the official ``ollama`` package: the official client is itself a
thin layer over httpx, but it has no timeout by default, no retries, silently drops
``user:pass@`` from the host URL (our gateway needs basic auth or a bearer token),
and reports everything as a generic ``ResponseError``/``ConnectionError``. Talking
to httpx directly gives us finite connect/read/write timeouts, basic and bearer
auth, one exception hierarchy (:mod:`ai_local_core.ollama.exceptions`) with the
upstream status, NDJSON streaming that survives lines split across chunks, and
retries through tenacity (exponential backoff with jitter, bounded by attempts and
total time) on connection errors and 429/502/503/504 only. A stream is retried
only while opening it: once a chunk has been handed to the caller it is never
repeated. Generations (``generate``, ``chat``) always ask Ollama to stream, also
when the caller wants one result (the chunks are folded): the read timeout then
counts the silence between two chunks, not the whole answer. The official
package stays a test dependency, used to prove that the Ollama stand-in speaks
the real protocol.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
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
from ai_local_core.errors import ConfigError, InvalidInput
from ai_local_core.ollama.exceptions import (
    ConnectionFailed,
    InvalidResponse,
    OllamaError,
    Timeout,
    error_from_response,
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
from ai_local_core.ollama.streaming import iter_ndjson
from ai_local_core.ollama.urls import normalize_ollama_url

if TYPE_CHECKING:
    from ai_local_core.config import OllamaSettings, Settings

__all__ = ["DEFAULT_TIMEOUT", "OllamaClient", "ResponseStream", "RetryPolicy"]

logger = logging.getLogger("ai_local_core.ollama")

#: Finite defaults (seconds): connect, read (between two bytes), write, pool.
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=5.0)

_T = TypeVar("_T", bound=BaseModel)
_G = TypeVar("_G", GenerateResponse, ChatResponse)
_JSON = dict[str, Any]


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


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, OllamaError) and exc.retryable


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request


class ResponseStream(Generic[_T]):
    """Typed items of an open NDJSON response; closes it when exhausted or closed.

    Raises :class:`ConnectionFailed` if the connection breaks mid-stream,
    :class:`InvalidResponse` if the stream ends before its final item, and the
    mapped :class:`OllamaError` for an ``{"error": ...}`` line.
    """

    def __init__(
        self,
        response: httpx.Response,
        item_type: type[_T],
        *,
        what: str,
        is_final: Callable[[_T], bool],
    ) -> None:
        self._response = response
        self._item_type = item_type
        self._what = what
        self._is_final = is_final
        self._objects = iter_ndjson(self._chunks())
        self._finished = False
        self._closed = False
        #: Items handed to the caller so far.
        self.received = 0

    def _chunks(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes()
        except httpx.TimeoutException as exc:
            raise Timeout(
                f"{self._what}: no data from Ollama within the read timeout "
                f"after {self.received} messages ({type(exc).__name__})"
            ) from exc
        except httpx.HTTPError as exc:
            raise ConnectionFailed(
                f"{self._what}: connection lost mid-stream after {self.received} messages "
                f"({type(exc).__name__}: {exc})"
            ) from exc

    def __iter__(self) -> ResponseStream[_T]:
        return self

    def __next__(self) -> _T:
        if self._closed:
            raise StopIteration
        try:
            obj = next(self._objects)
        except StopIteration:
            self.close()
            if not self._finished:
                raise InvalidResponse(
                    f"{self._what}: stream ended after {self.received} messages "
                    "without its final message"
                ) from None
            raise
        except BaseException:
            self.close()
            raise
        try:
            item = self._item_type.model_validate(obj)
        except ValidationError as exc:
            self.close()
            raise InvalidResponse(
                f"{self._what}: unexpected stream message: {exc.error_count()} invalid field(s)"
            ) from None
        self.received += 1
        if self._is_final(item):
            self._finished = True
        return item

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._objects.close()
            self._response.close()

    def __enter__(self) -> ResponseStream[_T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _done(item: GenerateResponse | ChatResponse) -> bool:
    return item.done


def _pull_done(item: PullProgress) -> bool:
    return item.status == "success"


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
        auth: httpx.Auth | None = None
        if basic_auth is not None:
            auth = httpx.BasicAuth(*basic_auth)
        elif token is not None:
            auth = _BearerAuth(token)

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
        all_headers = {"User-Agent": f"ai-local-core/{__version__}", "Accept": "application/json"}
        all_headers.update(headers or {})
        self._http = httpx.Client(
            base_url=url,
            auth=auth,
            timeout=timeout,
            headers=all_headers,
            verify=verify,
            trust_env=trust_env,
            transport=transport,
            follow_redirects=False,
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
        self._http.close()

    def __enter__(self) -> OllamaClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OllamaClient({self.base_url!r})"

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

    def _map_transport_error(self, exc: httpx.HTTPError, what: str) -> OllamaError:
        where = self.base_url
        if isinstance(exc, httpx.ConnectTimeout):
            return ConnectionFailed(
                f"{what}: cannot connect to Ollama at {where}: connect timeout", retryable=True
            )
        if isinstance(exc, httpx.TimeoutException):
            return Timeout(
                f"{what}: Ollama at {where} did not answer in time ({type(exc).__name__})"
            )
        if isinstance(exc, httpx.ConnectError):
            reason = str(exc) or type(exc).__name__
            return ConnectionFailed(
                f"{what}: cannot connect to Ollama at {where}: {reason}", retryable=True
            )
        if isinstance(exc, httpx.TransportError):
            return ConnectionFailed(
                f"{what}: connection to Ollama at {where} failed: {type(exc).__name__}: {exc}",
                retryable=True,
            )
        return InvalidResponse(f"{what}: {type(exc).__name__}: {exc}")

    def _check(self, response: httpx.Response, what: str) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.read()
        except httpx.HTTPError:
            body = b""
        error = error_from_response(response.status_code, body, what=what)
        error.retry_after = _retry_after(response)
        raise error

    def _with_retries(self, fn: Callable[[], httpx.Response], what: str) -> httpx.Response:
        policy = self.retry

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
            retry=retry_if_exception(_is_retryable),
            before_sleep=log_retry,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            return retrying(fn)
        except OllamaError as exc:
            exc.note_attempts(int(retrying.statistics.get("attempt_number", 1)))
            raise

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: _JSON | None = None,
        timeout: float | None = None,
        what: str,
    ) -> httpx.Response:
        request_timeout = self._timeout_for(timeout)

        def attempt() -> httpx.Response:
            started = time.monotonic()
            try:
                response = self._http.request(method, path, json=json, timeout=request_timeout)
            except httpx.HTTPError as exc:
                raise self._map_transport_error(exc, what) from exc
            logger.debug(
                "%s %s -> %d in %.1f ms",
                method,
                path,
                response.status_code,
                (time.monotonic() - started) * 1000,
            )
            self._check(response, what)
            return response

        return self._with_retries(attempt, what)

    def _open_stream(
        self, path: str, body: _JSON, *, timeout: float | None, what: str
    ) -> httpx.Response:
        request_timeout = self._timeout_for(timeout)

        def attempt() -> httpx.Response:
            request = self._http.build_request("POST", path, json=body, timeout=request_timeout)
            try:
                response = self._http.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._map_transport_error(exc, what) from exc
            try:
                self._check(response, what)
            except BaseException:
                response.close()
                raise
            return response

        return self._with_retries(attempt, what)

    def _generation(
        self, path: str, body: _JSON, item_type: type[_G], timeout: float | None, what: str
    ) -> ResponseStream[_G]:
        """The one way generations reach Ollama: streamed (``body["stream"]`` is true).

        The read timeout then bounds the silence between two chunks (a cold model load, the
        prompt evaluation, one token), never the whole answer; callers that want one result
        fold the chunks (``from_stream``), which is what ``stream: false`` would have sent.
        """
        response = self._open_stream(path, body, timeout=timeout, what=what)
        return ResponseStream(response, item_type, what=what, is_final=_done)

    def _json(self, response: httpx.Response, what: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise InvalidResponse(f"{what}: response is not JSON") from None

    def _parse(self, model: type[_T], data: Any, what: str) -> _T:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise InvalidResponse(
                f"{what}: unexpected response ({exc.error_count()} invalid field(s))"
            ) from None

    def _body(self, base: _JSON, **optional: Any) -> _JSON:
        body = dict(base)
        body.update({k: v for k, v in optional.items() if v is not None})
        if "keep_alive" not in body and self.keep_alive is not None:
            body["keep_alive"] = self.keep_alive
        return body

    @staticmethod
    def _require_model(model: str) -> str:
        if not isinstance(model, str) or not model.strip():
            raise InvalidInput("a model name is required")
        return model.strip()

    # ------------------------------------------------------------------ API

    def version(self) -> str:
        """The server's version (``GET /api/version``)."""
        data = self._json(self._send("GET", "/api/version", what="version"), "version")
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, str):
            raise InvalidResponse("version: no version in the response")
        return version

    def ping(self, *, timeout: float = 2.0) -> bool:
        """True if Ollama answers ``/api/version`` right now (no retries)."""
        try:
            response = self._http.get("/api/version", timeout=timeout)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def list_models(self) -> list[ModelInfo]:
        """Local models (``GET /api/tags``)."""
        data = self._json(self._send("GET", "/api/tags", what="list models"), "list models")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise InvalidResponse("list models: no models list in the response")
        return [self._parse(ModelInfo, m, "list models") for m in models]

    def ps(self) -> list[RunningModel]:
        """Models loaded in memory (``GET /api/ps``)."""
        data = self._json(self._send("GET", "/api/ps", what="ps"), "ps")
        models = data.get("models") if isinstance(data, dict) else None
        if not isinstance(models, list):
            raise InvalidResponse("ps: no models list in the response")
        return [self._parse(RunningModel, m, "ps") for m in models]

    def show(self, model: str) -> ShowResponse:
        """Details of one model (``POST /api/show``)."""
        model = self._require_model(model)
        what = f"show {model}"
        response = self._send("POST", "/api/show", json={"model": model}, what=what)
        return self._parse(ShowResponse, self._json(response, what), what)

    def delete(self, model: str) -> None:
        """Remove a model (``DELETE /api/delete``); :class:`ModelNotFound` if absent."""
        model = self._require_model(model)
        self._send("DELETE", "/api/delete", json={"model": model}, what=f"delete {model}")

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
        body: _JSON = {"model": model, "stream": True}
        if insecure:
            body["insecure"] = True
        response = self._open_stream("/api/pull", body, timeout=timeout, what=what)
        last = PullProgress()
        with ResponseStream(response, PullProgress, what=what, is_final=_pull_done) as stream:
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
        """``POST /api/generate``. With ``stream=True`` returns an open :class:`ResponseStream`,
        else the chunks folded into one result (see :meth:`_generation`)."""
        model = self._require_model(model)
        what = f"generate with {model}"
        body = self._body(
            {"model": model, "prompt": prompt, "stream": True},
            system=system,
            options=dict(options) if options else None,
            format=format,
            images=list(images) if images else None,
            keep_alive=keep_alive,
            raw=raw,
        )
        chunks = self._generation("/api/generate", body, GenerateResponse, timeout, what)
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
        """``POST /api/chat``. With ``stream=True`` returns an open :class:`ResponseStream`,
        else the chunks folded into one result (see :meth:`_generation`)."""
        model = self._require_model(model)
        what = f"chat with {model}"
        try:
            msgs = [
                m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in messages
            ]
        except ValidationError as exc:
            raise InvalidInput(f"invalid chat messages ({exc.error_count()} error(s))") from None
        body = self._body(
            {
                "model": model,
                "messages": [m.model_dump(exclude_none=True) for m in msgs],
                "stream": True,
            },
            options=dict(options) if options else None,
            format=format,
            keep_alive=keep_alive,
        )
        chunks = self._generation("/api/chat", body, ChatResponse, timeout, what)
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
        body = self._body(
            {"model": model, "input": input if isinstance(input, str) else list(input)},
            truncate=truncate,
            options=dict(options) if options else None,
            keep_alive=keep_alive,
            dimensions=dimensions,
        )
        response = self._send("POST", "/api/embed", json=body, timeout=timeout, what=what)
        return self._parse(EmbedResponse, self._json(response, what), what)

#!/usr/bin/python
"""Ansible module ``ai_local_core.node.service_ready``: wait for a service to answer over HTTP,
else fail with its journal.

The one place for the roles' wait-then-journal pattern (ollama, ai_services, cloudflared): poll a
URL until it answers with an expected status (and, optionally, an expected JSON field); when it
does not within the timeout, read the unit's journal and fail with the message, the last answer
and those lines, instead of a ``uri`` with retries, a rescue, a ``journalctl`` command and a
``fail`` in every role. Read-only, so it runs the same in check mode.

Runs on the managed host: standard library and Ansible's module_utils only, Python 3.9+.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

DOCUMENTATION = r"""
module: service_ready
short_description: Wait until a service answers over HTTP, else fail with its journal
description:
  - Polls O(url) with GET until it answers with one of O(status_code) and, when O(json_key) is
    given, a JSON body whose field O(json_key) equals O(json_value) (or, without O(json_value),
    is present and not empty).
  - Tries every O(delay) seconds for up to O(timeout) seconds; each try waits at most
    O(request_timeout) seconds for its answer. At least one try is made, so O(timeout=0) probes
    once.
  - When the condition does not hold in time, reads the last O(journal_lines) lines of the journal
    of O(unit) (C(journalctl --unit UNIT --lines N --no-pager --output OUTPUT)) and fails with
    O(msg), the last answer or error, and those lines.
  - Never changes anything; runs the same in check mode.
options:
  url:
    description: The URL to ask (http or https).
    type: str
    required: true
  status_code:
    description: The HTTP status codes that count as an answer.
    type: list
    elements: int
    default: [200]
  json_key:
    description:
      - A field of the JSON answer to check; a dotted path (C(a.b)) reaches into nested objects.
      - Without it the status code alone decides.
    type: str
  json_value:
    description:
      - The value O(json_key) must have, compared as is or as text (C(0.12) matches C("0.12")).
      - Left out, the field only has to be present and not empty.
    type: raw
  timeout:
    description: Seconds to keep trying, overall.
    type: float
    default: 60
  delay:
    description: Seconds to wait between tries.
    type: float
    default: 2
  request_timeout:
    description: Seconds one try waits for its answer.
    type: float
    default: 5
  unit:
    description:
      - The systemd unit whose journal the failure shows. Left out, the failure has no journal.
    type: str
  journal_lines:
    description: How many of the journal's last lines the failure shows.
    type: int
    default: 50
  journal_output:
    description: The journalctl output format (C(short-iso), C(cat), ...).
    type: str
    default: short-iso
  msg:
    description:
      - The failure's first line(s), before the last answer and the journal.
      - Defaults to a line naming the URL and the timeout.
    type: str
  redact:
    description:
      - Secrets to replace with O(redact_as) in the failure (journal, last answer, message).
      - Empty strings are ignored. The values never appear in the module's output.
    type: list
    elements: str
    default: []
  redact_as:
    description: What replaces each of O(redact).
    type: str
    default: <redacted>
attributes:
  check_mode:
    support: full
notes:
  - Runs on the managed host and needs C(journalctl) there only when it fails with O(unit) set.
author: ai-local-core
"""

EXAMPLES = r"""
- name: Wait for the API to report Ollama {{ ollama_version }}
  ai_local_core.node.service_ready:
    url: http://127.0.0.1:11434/api/version
    json_key: version
    json_value: "{{ ollama_version }}"
    timeout: 60
    unit: ollama
    journal_lines: 50
    msg: Ollama did not report version {{ ollama_version }} within 60s.

- name: Wait for the tunnel to be connected (the token redacted from its journal)
  ai_local_core.node.service_ready:
    url: http://127.0.0.1:20241/ready
    timeout: 60
    unit: cloudflared
    journal_lines: 25
    journal_output: cat
    redact: ["{{ cloudflared_token }}"]
    redact_as: <token redacted>
"""

RETURN = r"""
url:
  description: The URL asked.
  returned: always
  type: str
  sample: http://127.0.0.1:11434/api/version
status:
  description: The HTTP status of the last answer; absent when no answer came.
  returned: when an answer came
  type: int
  sample: 200
json:
  description: The last answer's body decoded as JSON; absent when it was not JSON.
  returned: when the last answer was JSON
  type: raw
  sample: {"version": "0.12.3"}
elapsed:
  description: Seconds spent waiting.
  returned: always
  type: float
  sample: 4.02
attempts:
  description: How many tries were made.
  returned: always
  type: int
  sample: 3
last_error:
  description: Why the last try did not count (no answer, wrong status, wrong JSON value).
  returned: failure
  type: str
  sample: "version is '0.11.0', expected '0.12.3'"
journal:
  description: The last lines of the unit's journal (secrets redacted).
  returned: failure, when O(unit) is set
  type: str
"""

#: The most of an answer's body kept for the failure message.
_BODY_SHOWN = 300
#: Seconds journalctl may take.
_JOURNAL_TIMEOUT = 30


@dataclass
class Attempt:
    """One try: the answer (``status``, ``json``) if one came, and why it did not count."""

    status: int | None = None
    json: Any = None
    is_json: bool = False
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.error is None


@dataclass
class Outcome:
    ready: bool
    last: Attempt
    attempts: int
    elapsed: float


def _field(document: Any, path: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted ``path`` in a decoded JSON ``document``."""
    value = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _matches(actual: Any, expected: Any) -> bool:
    if actual == expected:
        return True
    return actual is not None and expected is not None and str(actual) == str(expected)


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _BODY_SHOWN else text[:_BODY_SHOWN] + "..."


def judge(
    status: int,
    body: bytes,
    status_codes: Sequence[int],
    json_key: str | None = None,
    json_value: Any = None,
) -> Attempt:
    """Whether one answer counts; ``error`` says why not."""
    attempt = Attempt(status=status)
    text = body.decode("utf-8", errors="replace")
    try:
        attempt.json = json.loads(text)
        attempt.is_json = True
    except ValueError:
        pass
    if status not in status_codes:
        attempt.error = f"status {status}: {_short(text) or '(empty body)'}"
        return attempt
    if not json_key:
        return attempt
    if not attempt.is_json:
        attempt.error = f"status {status}, the answer is not JSON: {_short(text) or '(empty)'}"
        return attempt
    found, actual = _field(attempt.json, json_key)
    if not found:
        attempt.error = f"no {json_key!r} in the answer {_short(text)}"
    elif json_value is None:
        if actual in (None, "", [], {}):
            attempt.error = f"{json_key} is empty in the answer {_short(text)}"
    elif not _matches(actual, json_value):
        attempt.error = f"{json_key} is {actual!r}, expected {json_value!r}: {_short(text)}"
    return attempt


def probe(
    url: str,
    status_codes: Sequence[int],
    json_key: str | None = None,
    json_value: Any = None,
    request_timeout: float = 5,
) -> Attempt:
    """One GET of ``url``, judged."""
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=request_timeout) as answer:  # noqa: S310
            return judge(answer.status, answer.read(), status_codes, json_key, json_value)
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read()
        except OSError:
            body = b""
        return judge(exc.code, body, status_codes, json_key, json_value)
    except urllib.error.URLError as exc:
        return Attempt(error=f"no answer from {url}: {exc.reason}")
    except (OSError, ValueError) as exc:
        # Timeouts (socket.timeout is an OSError), resets, a malformed URL or answer.
        return Attempt(error=f"no answer from {url}: {exc or type(exc).__name__}")


def wait_until(
    attempt: Callable[[], Attempt],
    timeout: float,
    delay: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Call ``attempt`` until ready: every ``delay`` s for up to ``timeout`` s, once at least."""
    start = clock()
    deadline = start + max(0.0, timeout)
    tries = 0
    while True:
        last = attempt()
        tries += 1
        if last.ready:
            return Outcome(True, last, tries, clock() - start)
        if clock() + delay > deadline:
            return Outcome(False, last, tries, clock() - start)
        sleep(delay)


def journal_argv(unit: str, lines: int, output: str = "short-iso") -> list[str]:
    return ["journalctl", "--unit", unit, "--lines", str(lines), "--no-pager", "--output", output]


def read_journal(unit: str, lines: int, output: str = "short-iso") -> str:
    """The unit's last lines (journalctl on PATH), or why they could not be read."""
    try:
        done = subprocess.run(
            journal_argv(unit, lines, output),
            capture_output=True,
            timeout=_JOURNAL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"(journalctl gave no answer within {_JOURNAL_TIMEOUT} s)"
    except OSError as exc:
        return f"(journalctl could not run: {exc})"
    out = done.stdout.decode("utf-8", errors="replace").rstrip()
    if done.returncode != 0 and not out:
        err = done.stderr.decode("utf-8", errors="replace").strip()
        return f"(journalctl failed, rc {done.returncode}: {err or 'no output'})"
    return out


def redact(text: str, secrets: Sequence[str], placeholder: str = "<redacted>") -> str:
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, placeholder)
    return text


def failure_message(
    msg: str,
    last_error: str,
    unit: str | None = None,
    journal: str | None = None,
) -> str:
    parts = [msg.rstrip(), f"Last answer: {last_error}"]
    if unit:
        parts.append(f"Last lines of `journalctl -u {unit}`:\n{journal or '(none)'}")
    return "\n".join(parts)


def run(
    params: dict[str, Any],
    journal_reader: Callable[[str, int, str], str] = read_journal,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, dict[str, Any]]:
    """The module without Ansible: ``(failed, result)`` for the module's ``params``."""
    url: str = params["url"]
    status_codes = list(params.get("status_code") or [200])
    json_key = params.get("json_key")
    json_value = params.get("json_value")
    request_timeout = float(params.get("request_timeout", 5))

    def attempt() -> Attempt:
        return probe(url, status_codes, json_key, json_value, request_timeout)

    outcome = wait_until(
        attempt, float(params.get("timeout", 60)), float(params.get("delay", 2)), sleep=sleep
    )
    result: dict[str, Any] = {
        "changed": False,
        "url": url,
        "elapsed": round(outcome.elapsed, 2),
        "attempts": outcome.attempts,
    }
    last = outcome.last
    if last.status is not None:
        result["status"] = last.status
    if last.is_json:
        result["json"] = last.json
    if outcome.ready:
        return False, result

    secrets = [s for s in params.get("redact") or [] if s]
    placeholder = params.get("redact_as") or "<redacted>"
    unit = params.get("unit")
    journal = None
    if unit:
        journal = journal_reader(
            unit, int(params.get("journal_lines", 50)), params.get("journal_output") or "short-iso"
        )
        journal = redact(journal, secrets, placeholder)
        result["journal"] = journal
    last_error = redact(last.error or "", secrets, placeholder)
    msg = params.get("msg") or f"{url} was not ready within {float(params.get('timeout', 60)):g}s."
    result["last_error"] = last_error
    result["msg"] = failure_message(redact(msg, secrets, placeholder), last_error, unit, journal)
    return True, result


ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "url": {"type": "str", "required": True},
    "status_code": {"type": "list", "elements": "int", "default": [200]},
    "json_key": {"type": "str"},
    "json_value": {"type": "raw"},
    "timeout": {"type": "float", "default": 60},
    "delay": {"type": "float", "default": 2},
    "request_timeout": {"type": "float", "default": 5},
    "unit": {"type": "str"},
    "journal_lines": {"type": "int", "default": 50},
    "journal_output": {"type": "str", "default": "short-iso"},
    "msg": {"type": "str"},
    "redact": {"type": "list", "elements": "str", "default": [], "no_log": True},
    "redact_as": {"type": "str", "default": "<redacted>"},
}


def main() -> None:
    # Imported here, not at the top: run() stays importable by the unit tests without loading
    # ansible.module_utils (which patches sys.intern in the importing process).
    from ansible.module_utils.basic import AnsibleModule  # type: ignore[import-untyped]

    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    if module.params["delay"] < 0 or module.params["request_timeout"] <= 0:
        module.fail_json(msg="delay must be 0 or more and request_timeout more than 0")
    failed, result = run(module.params)
    if failed:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()

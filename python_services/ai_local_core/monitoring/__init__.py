"""Monitoring of an ai-local-core node: a Prometheus exporter and a health check.

* :mod:`.gpu` reads per-GPU figures through NVML (``nvidia-ml-py``); no GPU or no
  NVML library is a normal state (``gpu_present 0``), never an error.
* :mod:`.ollama_probe` reads ``/api/ps`` and ``/api/tags`` of Ollama.
* :mod:`.access_log` follows the gateway's JSON access log incrementally.
* :mod:`.exporter` serves all of it on ``/metrics`` (console script
  ``ai-local-core-exporter``); :mod:`.healthcheck` checks the node and posts to a
  webhook when something breaks and when it recovers (``ai-local-core-healthcheck``).
* :mod:`.status` formats the table of ``playbooks/status.yml``.

See ``docs/monitoring.md``.
"""

from __future__ import annotations

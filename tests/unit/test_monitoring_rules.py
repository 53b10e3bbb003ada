"""files/: the Prometheus alert rules (promtool check and unit tests) and the Grafana dashboard.

Both only name metrics that the exporter really exports (gathered here from a scrape of the
collector with every source present) or standard node exporter metrics, so renaming a metric in
exporter.py fails here until the rules and the dashboard follow. ``promtool`` comes from Debian's
``prometheus`` package (requirements/apt.txt); without it the promtool tests skip, except on CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from ai_local_core.monitoring.exporter import NodeCollector, build_registry
from ai_local_core.monitoring.gpu import read_gpus
from ai_local_core.monitoring.ollama_probe import LoadedModel, OllamaSnapshot, PresentModel
from ai_local_core.monitoring.settings import MonitoringSettings
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.nvml import RTX_3060, NvmlStandIn

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "files" / "prometheus" / "ai-local-core.rules.yml"
RULES_TEST = ROOT / "files" / "prometheus" / "ai-local-core.rules.test.yml"
DASHBOARD = ROOT / "files" / "grafana" / "ai-local-core.json"

#: Standard names of Prometheus itself (``up``) and of prometheus-node-exporter that the files use.
NODE_EXPORTER_METRICS = frozenset(
    {
        "up",
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_load1",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_boot_time_seconds",
        "node_uname_info",
    }
)
_PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
    }
)


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = (
            "promtool is not installed (apt-get install prometheus; it is in requirements/apt.txt)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI must check the alert rules")
        pytest.skip(message)
    return found


# ---------------------------------------------------------------------- promtool


def test_rules_pass_promtool_check(promtool: str) -> None:
    res = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS: 6 rules found" in res.stdout


def test_rules_unit_tests_pass(promtool: str) -> None:
    res = subprocess.run(
        [promtool, "test", "rules", str(RULES_TEST)],
        capture_output=True,
        text=True,
        check=False,
        cwd=RULES_TEST.parent,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_rule_tests_cover_model_on_cpu_and_cost_firing_and_not() -> None:
    cases = [
        case
        for group in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in group["alert_rule_test"]
    ]
    for alert in ("AiLocalCoreModelOnCpu", "AiLocalCoreEnergyCostOverBudget"):
        outcomes = {bool(c["exp_alerts"]) for c in cases if c["alertname"] == alert}
        assert outcomes == {True, False}, alert
    tested = {c["alertname"] for c in cases}
    defined = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert tested == defined  # every rule has a test case


# ---------------------------------------------------------------------- metric names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (possibly with Grafana variables) selects."""
    # Grafana's label_values(metric, label): the label is not a metric.
    text = re.sub(r"label_values\((.*),\s*\w+\s*\)\s*$", r"\1", expr.strip())
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)  # strings (label values)
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text):
        if match.group(1).lower() not in _PROMQL_KEYWORDS:
            names.add(match.group(1))
    return names


def test_metric_names_parser() -> None:
    expr = (
        "histogram_quantile(0.95, sum by (le, route) (rate(gateway_request_duration_seconds_bucket"
        '{instance=~"$instance", route!="x y"}[$__rate_interval]))) / 3.6e6'
        " and on (instance) gpu_present == 1 or vector(0) offset 5m"
    )
    assert metric_names(expr) == {"gateway_request_duration_seconds_bucket", "gpu_present"}
    assert metric_names("rate(gpu_energy_joule_total[5m])") == {"gpu_energy_joule_total"}
    assert metric_names('label_values(up{job="node"}, instance)') == {"up"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Every sample name the exporter produces with every source present."""
    tmp = tmp_path_factory.mktemp("exported")
    zone = tmp / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("1000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    log = tmp / "access.log"
    log.write_text('{"route":"ollama","status":200,"request_time":0.3}\ngarbage\n')
    settings = MonitoringSettings(
        gateway_access_log=log,
        energy_tariff_pln_per_kwh=1.0,
        rapl_root=tmp / "powercap",
    )
    ollama = OllamaSnapshot(
        up=True,
        version="0.35.1",
        present=[PresentModel(name="llama3.1:8b", size_bytes=4_900_000_000)],
        loaded=[
            LoadedModel(
                name="llama3.1:8b",
                size_bytes=6_000_000_000,
                size_vram_bytes=6_000_000_000,
                expires_at=datetime(2026, 11, 24, 9, 5, tzinfo=timezone.utc),
            )
        ],
    )
    with pytest.MonkeyPatch.context() as patch:
        NvmlStandIn([RTX_3060]).install(patch)
        collector = NodeCollector(
            settings,
            gpu_reader=read_gpus,
            ollama_reader=lambda url, timeout: ollama,
            access_log_from_start=True,
        )
        text = generate_latest(build_registry(collector)).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def _exprs(node: Any) -> Iterator[str]:
    """PromQL of a dashboard: targets' ``expr``, query variables' ``definition`` and ``query``."""
    if isinstance(node, dict):
        query_variable = node.get("type") == "query"
        for key, value in node.items():
            promql = key in ("expr", "definition") or (key == "query" and query_variable)
            if promql and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def test_the_exporter_exports_what_the_files_expect(exported: set[str]) -> None:
    # The scrape above really had every source: a sample of each kind is present.
    for name in (
        "gpu_energy_joules_total",
        "cpu_energy_joules_total",
        "energy_cost_pln_total",
        "ollama_loaded_model_vram_ratio",
        "gateway_request_duration_seconds_bucket",
    ):
        assert name in exported


def test_rules_use_only_exported_metric_names(exported: set[str]) -> None:
    rules = yaml.safe_load(RULES.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    used = set().union(*(metric_names(e) for e in exprs))
    assert used, exprs
    assert used - exported - NODE_EXPORTER_METRICS == set()


def test_dashboard_uses_only_exported_metric_names(exported: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = list(_exprs(dashboard))
    assert len(exprs) > 20
    used = set().union(*(metric_names(e) for e in exprs))
    assert used - exported - NODE_EXPORTER_METRICS == set()
    # Every energy series is on the dashboard.
    assert {"gpu_energy_joules_total", "cpu_energy_joules_total", "energy_cost_pln_total"} <= used


def test_dashboard_datasource_is_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))

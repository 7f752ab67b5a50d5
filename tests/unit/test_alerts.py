"""The example alert rules (charts/inferops/files/alerts.yaml): rendered by the chart,
written only on what the operator exports, and evaluated by Prometheus's own promtool
against series of `inferops_services` (`promtool test rules`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from inferops.api import phases
from tests.unit.test_chart import by_kind, render

RULES = Path(__file__).resolve().parents[2] / "charts" / "inferops" / "files" / "alerts.yaml"
VOCABULARY = {v for k, v in vars(phases).items() if k.isupper() and isinstance(v, str)}
EXPORTED = {"inferops_services"}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_the_chart_renders_the_rules_when_asked() -> None:
    assert by_kind(render(), "PrometheusRule") == []
    docs = render({"metrics": {"prometheusRule": {"enabled": True, "labels": {"release": "p"}}}})
    (rule,) = by_kind(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "p"
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_rules_use_only_what_the_operator_exports() -> None:
    for rule in rules():
        expr = rule["expr"]
        assert set(re.findall(r"inferops_[a-z_]+", expr)) <= EXPORTED, rule["alert"]
        values = re.findall(r'(?:phase|reason)=~?"([^"]+)"', expr)
        assert values, rule["alert"]
        for value in values:
            assert set(value.split("|")) <= VOCABULARY, (rule["alert"], value)


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: .ci/run installs it (Debian package prometheus)"
    return found


def series(phase: str, reason: str, values: str, kind: str = "RealTimeService") -> dict[str, str]:
    labels = f'kind="{kind}",phase="{phase}",reason="{reason}"'
    return {"series": f"inferops_services{{{labels}}}", "values": values}


def alert(name: str, at: str, labels: dict[str, str] | None = None, summary: str = "") -> Any:
    """What `name` fires at `at`: one alert with these labels and summary, or none."""
    template = next(r for r in rules() if r["alert"] == name)["annotations"]["description"]
    description = template.replace("{{ $labels.kind }}", (labels or {}).get("kind", ""))
    fired = [
        {
            "exp_labels": labels,
            "exp_annotations": {"summary": summary, "description": description},
        }
    ]
    return {"eval_time": at, "alertname": name, "exp_alerts": fired if labels else []}


def test_promtool_fires_each_alert_when_it_should(tmp_path: Path) -> None:
    tool = promtool()
    subprocess.run([tool, "check", "rules", str(RULES)], check=True, capture_output=True)
    pull = {"kind": "RealTimeService", "reason": "ImagePullBackOff", "severity": "warning"}
    test = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("Deploying", "ImagePullBackOff", "2x20"),
                    series("Running", "Running", "40x60"),  # healthy: never an alert
                    series("Failed", "QuotaExceeded", "0x3 1x20", kind="BatchService"),
                    series("Deploying", "Unschedulable", "1x40"),
                    series("Abnormal", "ChildRefused", "1x20"),
                ],
                "alert_rule_test": [
                    alert("InferopsServiceCannotStart", "5m"),  # not for 10 minutes yet
                    alert(
                        "InferopsServiceCannotStart",
                        "11m",
                        pull,
                        "2 RealTimeService cannot start: ImagePullBackOff",
                    ),
                    alert(
                        "InferopsServiceFailed",
                        "10m",
                        {"kind": "BatchService", "reason": "QuotaExceeded", "severity": "warning"},
                        "1 BatchService Failed (QuotaExceeded)",
                    ),
                    alert("InferopsServiceWaitingForNodes", "20m"),
                    alert(
                        "InferopsServiceWaitingForNodes",
                        "35m",
                        {"kind": "RealTimeService", "severity": "info"},
                        "1 RealTimeService waiting for nodes",
                    ),
                    alert(
                        "InferopsReconcileFailing",
                        "6m",
                        {
                            "kind": "RealTimeService",
                            "reason": "ChildRefused",
                            "severity": "critical",
                        },
                        "1 RealTimeService the operator cannot reconcile (ChildRefused)",
                    ),
                    alert(
                        "InferopsServiceAbnormal",
                        "11m",
                        {
                            "kind": "RealTimeService",
                            "reason": "ChildRefused",
                            "severity": "warning",
                        },
                        "1 RealTimeService Abnormal (ChildRefused)",
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(test))
    command = [tool, "test", "rules", str(path)]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

"""The Argo CD health check of docs/argocd-health.md, run in Lua 5.1 (Argo CD's gopher-lua
speaks 5.1) against sample objects and statuses made by the operator's own status code."""

from __future__ import annotations

import copy
import datetime
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from lupa import lua51

from inferops.api import phases
from inferops.api.base import ApiModel
from inferops.api.batch import BatchServiceSpec
from inferops.api.realtime import RealTimeServiceSpec
from inferops.reconcile.application import application_status
from inferops.reconcile.batch_status import batch_status
from inferops.reconcile.common import blocked_status, status_fields
from inferops.reconcile.realtime_status import Observed, realtime_status
from tests.unit.rules_table import app, bs, rts, version

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "argocd-health.md"
NOW = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)


def load_docs_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("argocd_cm", REPO / "docs" / "argocd_cm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCRIPT: str = load_docs_module().health_lua()


def _to_lua(runtime: Any, value: Any) -> Any:
    """JSON-like Python data as Argo CD hands it to Lua: tables, 1-based arrays, no nulls."""
    if isinstance(value, dict):
        return runtime.table_from(
            {k: _to_lua(runtime, v) for k, v in value.items() if v is not None}
        )
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


def health(obj: dict[str, Any]) -> tuple[str, str]:
    runtime = lua51.LuaRuntime(unpack_returned_tuples=False)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(SCRIPT)
    return str(result.status), str(result.message or "")


def with_status(
    obj: dict[str, Any], status: ApiModel | dict[str, Any] | None, generation: int = 1
) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["generation"] = generation
    if status is not None:
        obj["status"] = status_fields(status) if isinstance(status, ApiModel) else status
    return obj


# ---- statuses from the operator's code ---------------------------------------------------

RTS = rts(version("1.0.0", 70, computeNodes=2), version("2.0.0", 30))
RTS_SPEC = RealTimeServiceSpec.model_validate(RTS["spec"])


def deployment(ver: str, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {
            "generation": 1,
            "labels": {
                "serving.inferops.dev/application": "iris",
                "serving.inferops.dev/version": ver,
            },
        },
        "spec": {"replicas": replicas},
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": ready,
        },
    }


ROUTER = {
    "metadata": {"generation": 1, "labels": {}},
    "spec": {"replicas": 1},
    "status": {"observedGeneration": 1, "updatedReplicas": 1, "readyReplicas": 1},
}


def realtime(ready: int, old: dict[str, Any] | None = None, stopped: bool = False) -> ApiModel:
    spec = RTS_SPEC.model_copy(update={"stopped": stopped})
    observed = Observed([deployment("1.0.0", 2, ready), deployment("2.0.0", 1, 1)], ROUTER, [])
    return realtime_status(
        spec, generation=1, old=old, observed=observed, url="http://svc", now=NOW
    )


BS = bs()
BS_SPEC = BatchServiceSpec.model_validate(BS["spec"])


def batch(
    job: dict[str, Any] | None, stopped: bool = False, pods: list[Any] | None = None
) -> ApiModel:
    spec = BS_SPEC.model_copy(update={"stopped": stopped})
    return batch_status(spec, generation=1, old=None, job=job, pods=pods or [], task="t1", now=NOW)


def job(condition: str | None = None) -> dict[str, Any]:
    conditions = (
        [{"type": condition, "status": "True", "reason": "X", "message": "BackoffLimitExceeded"}]
        if condition
        else []
    )
    return {"spec": {"completions": 1}, "status": {"conditions": conditions}}


RUNNING_POD = {
    "metadata": {"name": "job-0"},
    "status": {
        "phase": "Running",
        "containerStatuses": [{"name": "worker", "state": {"running": {}}}],
    },
}

SAMPLES = [
    ("rts Running", with_status(RTS, realtime(2)), "Healthy", "Running: 3/3 instances ready"),
    ("rts Deploying", with_status(RTS, realtime(1)), "Progressing", "Deploying: 2/3"),
    (
        "rts Abnormal",
        with_status(RTS, realtime(1, old={"phase": "Running", "observedGeneration": 1})),
        "Degraded",
        "Abnormal: 2/3 instances ready",
    ),
    ("rts Stopped", with_status(RTS, realtime(0, stopped=True)), "Suspended", "Stopped"),
    (
        "rts Failed",
        with_status(
            RTS,
            blocked_status(
                "RealTimeService",
                None,
                1,
                reason="InvalidSpec",
                message="spec.versions[0].specification: unknown",
                now=NOW,
            ),
        ),
        "Degraded",
        "Failed: spec.versions[0].specification: unknown",
    ),
    (
        "rts spec changed",
        with_status(RTS, realtime(2), generation=2),
        "Progressing",
        "observe generation 2",
    ),
    (
        "app Normal",
        with_status(app(), application_status(app()["spec"], 1, None)),
        "Healthy",
        "2 version(s) Normal",
    ),
    (
        "app Invalid",
        with_status(
            app(),
            application_status(
                {**app()["spec"], "versions": [{**app()["spec"]["versions"][0], "apis": []}]},
                1,
                None,
            ),
        ),
        "Degraded",
        "1.0.0: spec.versions[0].apis",
    ),
    (
        "app spec changed",
        with_status(app(), application_status(app()["spec"], 1, None), 3),
        "Progressing",
        "generation 3",
    ),
    ("bs Completed", with_status(BS, batch(job("Complete"))), "Healthy", "Completed"),
    ("bs Running", with_status(BS, batch(job(), pods=[RUNNING_POD])), "Progressing", "Running"),
    ("bs Deploying", with_status(BS, batch(None)), "Progressing", "Deploying"),
    (
        "bs Failed",
        with_status(BS, batch(job("Failed"))),
        "Degraded",
        "Failed: BackoffLimitExceeded",
    ),
    ("bs Stopped", with_status(BS, batch(job(), stopped=True)), "Suspended", "Stopped"),
]


@pytest.mark.parametrize(
    ("obj", "status", "fragment"), [s[1:] for s in SAMPLES], ids=[s[0] for s in SAMPLES]
)
def test_statuses_from_the_operator(obj: dict[str, Any], status: str, fragment: str) -> None:
    got, message = health(obj)
    assert got == status, message
    assert fragment in message


# ---- hand-made edge cases ----------------------------------------------------------------

READY = {"type": "Ready", "status": "True", "observedGeneration": 2, "reason": "Running"}


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        (None, 1, "Progressing"),
        ({}, 1, "Progressing"),  # no observedGeneration yet
        ({"phase": "Running", "observedGeneration": 2, "conditions": [READY]}, 2, "Healthy"),
        ({"phase": "Running", "observedGeneration": 2, "conditions": [READY]}, 3, "Progressing"),
        # The top-level observedGeneration moved on, the Ready condition did not yet.
        ({"phase": "Running", "observedGeneration": 3, "conditions": [READY]}, 3, "Progressing"),
        (
            {
                "phase": "Running",
                "observedGeneration": 2,
                "conditions": [{**READY, "status": "False", "reason": "Deploying"}],
            },
            2,
            "Progressing",
        ),
        ({"phase": "Deploying", "observedGeneration": 2}, 2, "Progressing"),
        ({"phase": "Failed", "observedGeneration": 2, "message": "quota"}, 2, "Degraded"),
        ({"phase": "Abnormal", "observedGeneration": 2}, 2, "Degraded"),
        ({"phase": "Stopped", "observedGeneration": 2}, 2, "Suspended"),
        ({"phase": "Completed", "observedGeneration": 2}, 2, "Healthy"),
        ({"phase": "SomethingNew", "observedGeneration": 2}, 2, "Progressing"),
        ({"observedGeneration": 2, "conditions": [{**READY, "status": "False"}]}, 2, "Degraded"),
        ({"observedGeneration": 2, "conditions": [READY]}, 2, "Healthy"),
    ],
)
def test_generation_and_phase_table(
    status: dict[str, Any] | None, generation: int, expected: str
) -> None:
    obj = {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": "svc", "generation": generation},
    }
    if status is not None:
        obj["status"] = status
    assert health(obj)[0] == expected


RUNNING = {"phase": "Running", "observedGeneration": 2, "conditions": [READY]}


@pytest.mark.parametrize(
    ("phase", "rollout", "expected"),
    [
        ("Running", "Progressing", "Progressing"),
        ("Running", "Waiting", "Progressing"),
        ("Running", "Pending", "Progressing"),
        ("Running", "Paused", "Suspended"),
        ("Running", "RolledBack", "Degraded"),
        ("Running", "Failed", "Degraded"),
        ("Running", "Succeeded", "Healthy"),
        ("Deploying", "Progressing", "Progressing"),
        ("Stopped", "Progressing", "Suspended"),  # the phase wins: stopped, then abnormal
        ("Abnormal", "Progressing", "Degraded"),
    ],
)
def test_a_rollout_shows_in_the_health(phase: str, rollout: str, expected: str) -> None:
    """Progressing during a rollout, Suspended while paused, Degraded after a rollback
    with the gate that failed and its measure (from the rollout state machine's words)."""
    message = "rolled back at step 1 of 3: maxErrorRatePercent 20 > 5; traffic back to ..."
    obj = {
        "apiVersion": "serving.inferops.dev/v1alpha1",
        "kind": "RealTimeService",
        "metadata": {"name": "svc", "generation": 2},
        "status": {**RUNNING, "phase": phase, "rollout": {"phase": rollout, "message": message}},
    }
    got, said = health(obj)
    assert got == expected, said
    if expected == "Degraded" and phase == "Running":
        assert said == f"Rollout {rollout}: {message}"


def test_messages_carry_the_operators_words() -> None:
    obj = {
        "metadata": {"generation": 1},
        "status": {
            "phase": "Failed",
            "observedGeneration": 1,
            "conditions": [{"type": "Ready", "status": "False", "message": "from condition"}],
        },
    }
    assert health(obj) == ("Degraded", "Failed: from condition")
    obj["status"]["message"] = "quota of 20 real-time services"
    assert health(obj) == ("Degraded", "Failed: quota of 20 real-time services")
    assert health({"metadata": {"generation": 1}}) == ("Progressing", "Waiting for the operator")


# ---- the docs ----------------------------------------------------------------------------


def test_argocd_cm_keys_in_the_docs_and_the_generated_patch() -> None:
    text = DOC.read_text()
    documented = re.findall(
        r"resource\.customizations\.health\.serving\.inferops\.dev_(\w+):", text
    )
    assert documented == ["AIApplication", "RealTimeService", "BatchService"]
    out = load_docs_module()
    assert out.patch()["data"] == {
        f"resource.customizations.health.serving.inferops.dev_{k}": SCRIPT for k in documented
    }


def test_generated_patch_is_yaml_with_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_docs_module().main() == 0
    data = yaml.safe_load(capsys.readouterr().out)["data"]
    assert len(data) == 3 and all(v == SCRIPT for v in data.values())


# ---- the contract: every phase x every reason x generation observed or not ---------------

REASONS = sorted(
    v
    for k, v in vars(phases).items()
    if k.isupper() and isinstance(v, str) and v not in ("Ready", "Progressing")
)
# phase -> (Ready as the operator writes it, health)
PHASES = {
    "Deploying": ("False", "Progressing"),
    "Running": ("True", "Healthy"),
    "Abnormal": ("False", "Degraded"),
    "Failed": ("False", "Degraded"),
    "Stopped": ("False", "Suspended"),
    "Completed": ("True", "Healthy"),
}


@pytest.mark.parametrize("kind", ["RealTimeService", "BatchService"])
@pytest.mark.parametrize("phase", sorted(PHASES))
def test_every_phase_and_reason_the_operator_writes(kind: str, phase: str) -> None:
    ready, expected = PHASES[phase]
    if kind == "BatchService" and phase == "Running":
        ready, expected = "False", "Progressing"  # a batch runs until it completes
    for reason in REASONS:
        for behind in (False, True):
            condition = {"type": "Ready", "status": ready, "reason": reason, "message": "why"}
            obj = {
                "kind": kind,
                "metadata": {"name": "x", "generation": 3 if behind else 2},
                "status": {
                    "phase": phase,
                    "observedGeneration": 2,
                    "message": f"the cause: {reason}",
                    "conditions": [{**condition, "observedGeneration": 2}],
                },
            }
            got, message = health(obj)
            assert got == ("Progressing" if behind else expected), (phase, reason, behind)
            if got == "Degraded":
                assert f"the cause: {reason}" in message

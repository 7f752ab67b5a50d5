"""What a failed pass tells the user: the reason, a bounded message, the phase it leaves."""

from __future__ import annotations

import pytest

from inferops.reconcile.errors import DETAIL, ChildRefusedError, describe, errored_phase
from inferops.reconcile.kube import KubeError


@pytest.mark.parametrize(
    ("exc", "reason", "message"),
    [
        (
            ChildRefusedError("Service/svc-v1", 422, "spec.ports[0].port: Invalid value: 0"),
            "ChildRefused",
            "the API server refused Service/svc-v1 (422): spec.ports[0].port: Invalid value: 0",
        ),
        (
            KubeError(403, 'pods is forbidden: User "x" cannot list'),
            "ReconcileError",
            'an API request failed (403): pods is forbidden: User "x" cannot list',
        ),
        (KeyError("versions"), "ReconcileError", "KeyError: 'versions'"),
    ],
)
def test_each_error_is_described(exc: Exception, reason: str, message: str) -> None:
    assert describe(exc) == (reason, message)


def test_a_long_error_is_bounded_on_one_line() -> None:
    _, message = describe(RuntimeError("line\n" * 1000))
    assert len(message) == DETAIL and "\n" not in message and message.endswith("...")


@pytest.mark.parametrize(
    ("old", "phase"),
    [
        (None, "Deploying"),
        ("Deploying", "Deploying"),
        ("Running", "Abnormal"),
        ("Abnormal", "Abnormal"),
        ("Failed", "Failed"),
        ("Stopped", "Stopped"),
        ("Completed", "Completed"),
    ],
)
def test_the_phase_an_error_leaves(old: str | None, phase: str) -> None:
    assert errored_phase(old) == phase

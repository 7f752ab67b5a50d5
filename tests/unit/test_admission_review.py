"""What the webhook tells a caller it cannot authenticate: allowed or denied for the object
it sent, never what another namespace holds.

A review arriving without client authentication may be forged by any pod; it can name any
namespace. The fake stands in for our own Kube wrapper (the interface boundary); the real
webhook server and API server are in tests/cluster/test_admission.py.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kopf
import pytest

from inferops.api.catalog import default_catalog
from inferops.handlers import admission
from inferops.handlers.run import WebhookOptions
from tests.unit.fake_kube import FakeKube
from tests.unit.rules_table import APPS, bs, rts, version

VICTIM = "victim"
# What the victim's namespace holds that a forged review must not learn.
SECRETS = ("1.0.0", "2.0.0", "quota of 1", "in use", "urls:", "at least one API")


def victim_kube() -> FakeKube:
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": VICTIM,
            "annotations": {
                "serving.inferops.dev/quota-realtime-services": "1",
                "serving.inferops.dev/quota-public-instances": "3",
            },
        },
    }
    objects = [namespace]
    for obj in [*APPS, rts(version("1.0.0", 100, computeNodes=2), name="running")]:
        stored = copy.deepcopy(obj)
        stored["metadata"].update(namespace=VICTIM, creationTimestamp="2026-01-01T00:00:00Z")
        objects.append(stored)
    return FakeKube(objects)


def review(kube: FakeKube, obj: dict[str, Any], options: WebhookOptions) -> str | None:
    """The refusal message for `obj` created in the victim's namespace, or None."""
    body = copy.deepcopy(obj)
    body["metadata"]["namespace"] = VICTIM
    memo = SimpleNamespace(kube=kube, catalog=default_catalog(), webhook=options)
    try:
        admission.admit(body, old=None, operation="CREATE", dryrun=False, warnings=[], memo=memo)
    except kopf.AdmissionError as exc:
        return str(exc)
    return None


UNAUTHENTICATED = WebhookOptions(port=9443)

FORGED = [
    pytest.param(rts(version("9.9.9", 100)), "has no version '9.9.9'", id="unknown-version"),
    pytest.param(
        rts(version("1.0.0", 100) | {"application": "broken"}),
        "version '1.0.0' of application 'broken' is Invalid",
        id="invalid-version",
    ),
    pytest.param(
        bs(requestPath="/predict"), "'/predict' is not one of the app's API urls", id="batch-url"
    ),
    pytest.param(
        rts(version("1.0.0", 100), name="second"),
        "quota of real-time services in this namespace is used",
        id="quota-services",
    ),
]


@pytest.mark.parametrize(("obj", "verdict"), FORGED)
def test_an_unauthenticated_review_learns_nothing_of_the_namespace(
    monkeypatch: pytest.MonkeyPatch, obj: dict[str, Any], verdict: str
) -> None:
    monkeypatch.setattr(admission, "LEDGER", admission.QuotaLedger())
    message = review(victim_kube(), obj, UNAUTHENTICATED)
    assert message is not None and verdict in message
    own = json.dumps(obj)  # what the caller sent may come back to it
    assert not [s for s in SECRETS if s in message and s not in own], message


def test_an_unauthenticated_review_learns_no_public_instance_usage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(admission, "LEDGER", admission.QuotaLedger())
    kube = victim_kube()
    kube.delete("v1", "Namespace", None, VICTIM)
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": VICTIM,
                "annotations": {"serving.inferops.dev/quota-public-instances": "3"},
            },
        }
    )
    message = review(kube, rts(version("1.0.0", 100, computeNodes=2), name="more"), UNAUTHENTICATED)
    assert message is not None and "public-pool instance quota" in message
    assert "this service asks for 2" in message  # its own spec: the caller sent it
    assert "of 3" not in message and "in use" not in message, message


def test_an_authenticated_api_server_gets_the_details_for_its_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind client authentication the review is the API server's, for a user allowed to
    create in that namespace: the message may say what the namespace holds."""
    monkeypatch.setattr(admission, "LEDGER", admission.QuotaLedger())
    kube = victim_kube()
    authenticated = WebhookOptions(port=9443, client_ca=Path("/etc/inferops/client-ca/ca.crt"))
    message = review(kube, rts(version("9.9.9", 100)), authenticated)
    assert message is not None and "(has: 1.0.0, 2.0.0)" in message
    message = review(kube, rts(version("1.0.0", 100), name="second"), authenticated)
    assert message is not None and "quota of 1 real-time services" in message


def test_a_review_without_a_namespace_lists_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Our kinds are namespaced: a review naming no namespace is refused before any list
    (it used to list the applications of every namespace)."""
    monkeypatch.setattr(admission, "LEDGER", admission.QuotaLedger())
    kube = victim_kube()
    listed: list[Any] = []
    original = kube.list_objects

    def spy(api_version: str, kind: str, namespace: str | None, labels: Any = None) -> Any:
        listed.append(namespace)
        return original(api_version, kind, namespace, labels)

    kube.list_objects = spy  # type: ignore[method-assign]
    memo = SimpleNamespace(kube=kube, catalog=default_catalog(), webhook=UNAUTHENTICATED)
    with pytest.raises(kopf.AdmissionError) as info:
        admission.admit(
            rts(version("9.9.9", 100)),
            old=None,
            operation="CREATE",
            dryrun=False,
            warnings=[],
            memo=memo,
        )
    assert None not in listed
    assert "1.0.0" not in str(info.value)


def request(namespace: Any, obj_namespace: Any = "same", kind: str = "RealTimeService") -> Any:
    obj = rts(version("1.0.0", 100))
    if obj_namespace == "same":
        obj["metadata"]["namespace"] = namespace
    elif obj_namespace is not None:
        obj["metadata"]["namespace"] = obj_namespace
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "u-1",
            "kind": {"group": "serving.inferops.dev", "version": "v1alpha1", "kind": kind},
            "resource": {
                "group": "serving.inferops.dev",
                "version": "v1alpha1",
                "resource": "realtimeservices",
            },
            "name": "svc",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": obj,
        },
    }


@pytest.mark.parametrize(
    ("req", "problem"),
    [
        (request("team-a", "victim"), "the object's namespace is not the review's"),
        (request(None, "victim"), "the review names no namespace"),
        (request("../../api/v1/secrets"), "the review's namespace is not a DNS-1123 label"),
        (request("team-a", kind="AIApplication"), "the object's kind is not the review's"),
        (request("team-a", kind="Secret") | {"request": None}, "not an admission request"),
    ],
)
def test_inconsistent_reviews_are_refused_without_looking(req: Any, problem: str) -> None:
    from inferops.handlers.webhook import review_problem

    assert review_problem(req) == problem


def test_a_consistent_review_passes_and_gets_its_namespace() -> None:
    from inferops.handlers.webhook import review_problem

    assert review_problem(request("team-a")) is None
    req = request("team-a", None)
    assert review_problem(req) is None
    assert req["request"]["object"]["metadata"]["namespace"] == "team-a"

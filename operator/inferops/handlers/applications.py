"""AIApplication: check every version and report Normal or Invalid."""

from __future__ import annotations

from typing import Any

import kopf

from inferops.api.kinds import APPLICATION
from inferops.api.names import GROUP, VERSION
from inferops.handlers import events
from inferops.reconcile.application import reconcile_application

RESOURCE = (GROUP, VERSION, APPLICATION.plural)


@kopf.on.resume(*RESOURCE)
@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def check_application(name: str, namespace: str | None, memo: Any, **_: Any) -> None:
    events.report(reconcile_application(memo.kube, str(namespace), name))

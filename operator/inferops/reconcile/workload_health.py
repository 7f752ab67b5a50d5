"""What the workloads of a service say about their progress: rollouts, deadlines, Jobs.

Pure readers of Deployments and Jobs as the API server returns them (pods: `causes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = Mapping[str, Any]


def ready_replicas(deployment: Obj) -> int:
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def rolled_out(deployment: Obj) -> bool:
    """The Deployment's current generation is observed, updated and ready everywhere."""
    status = deployment.get("status") or {}
    spec_replicas = int((deployment.get("spec") or {}).get("replicas") or 0)
    generation = deployment.get("metadata", {}).get("generation")
    return (
        status.get("observedGeneration") == generation
        and int(status.get("updatedReplicas") or 0) >= spec_replicas
        and int(status.get("readyReplicas") or 0) >= spec_replicas
    )


def deadline_exceeded(deployment: Obj) -> bool:
    for cond in (deployment.get("status") or {}).get("conditions") or ():
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return True
    return False


def job_condition(job: Obj | None, kind: str) -> Obj | None:
    """The Job's condition of this type when it is True."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or ():
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None

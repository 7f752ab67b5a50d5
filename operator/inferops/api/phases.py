"""The status vocabulary: every phase and condition reason the operator writes.

Users match on these (kubectl wait, Argo CD health checks, alerts), so they are part of the
API. Each constant is `Final`, so its type is the literal itself and fits the phase
`Literal`s of the status models.
"""

from __future__ import annotations

from typing import Final

# Phases (status.phase).
DEPLOYING: Final = "Deploying"
RUNNING: Final = "Running"
ABNORMAL: Final = "Abnormal"
STOPPED: Final = "Stopped"
FAILED: Final = "Failed"
COMPLETED: Final = "Completed"
NORMAL: Final = "Normal"  # an AIApplication version services may use
INVALID: Final = "Invalid"  # an AIApplication version they may not

# Condition types.
READY: Final = "Ready"
PROGRESSING: Final = "Progressing"
ROLLOUT: Final = "Rollout"  # condition: spec.rollout's state (reason: its phase)

# Condition reasons beyond the phase names (a phase is also the reason of its condition).
INVALID_SPEC: Final = "InvalidSpec"
QUOTA_EXCEEDED: Final = "QuotaExceeded"
ROUTER_UNAVAILABLE: Final = "RouterUnavailable"
NODES_NOT_READY: Final = "NodesNotReady"
CRASH_LOOP: Final = "CrashLoop"
# What the pods say (reconcile.causes), most pressing first.
IMAGE_PULL_BACK_OFF: Final = "ImagePullBackOff"
CONTAINER_CONFIG_ERROR: Final = "ContainerConfigError"
OOM_KILLED: Final = "OOMKilled"
UNSCHEDULABLE: Final = "Unschedulable"
STARTUP_PROBE_FAILING: Final = "StartupProbeFailing"
# A pass that failed (reconcile.errors): a child the API server refused, any other error.
CHILD_REFUSED: Final = "ChildRefused"
RECONCILE_ERROR: Final = "ReconcileError"
# Each is also posted as a Warning Event when the Ready condition comes to name it.
WARNED_REASONS: Final = frozenset(
    {
        IMAGE_PULL_BACK_OFF,
        CONTAINER_CONFIG_ERROR,
        OOM_KILLED,
        CRASH_LOOP,
        UNSCHEDULABLE,
        STARTUP_PROBE_FAILING,
        CHILD_REFUSED,
        RECONCILE_ERROR,
    }
)
DEPLOYMENT_TIMEOUT: Final = "DeploymentTimeout"
JOB_FAILED: Final = "JobFailed"
ALL_VERSIONS_NORMAL: Final = "AllVersionsNormal"
INVALID_VERSIONS: Final = "InvalidVersions"
SECRET_NOT_USABLE: Final = "SecretNotUsable"
# A running service whose spec the catalog no longer admits (a flavor or pool left it):
# the condition CatalogConflict is True with reason CatalogChanged while it lasts.
CATALOG_CONFLICT: Final = "CatalogConflict"
CATALOG_CHANGED: Final = "CatalogChanged"
# Shadow versions answer no client: their readiness is this condition's, not the phase's.
SHADOWS_READY: Final = "ShadowsReady"

# Failed for the spec, a quota or a missing API rather than the workload: nothing is
# applied for that generation, and only the cluster or a new spec can lift it.
BLOCKING_REASONS: Final = frozenset(
    {INVALID_SPEC, QUOTA_EXCEEDED, ROUTER_UNAVAILABLE, SECRET_NOT_USABLE}
)
# Of those, the ones the cluster can lift (the operator retries them on a timer): a Secret
# labelled usable, or created, lifts SecretNotUsable.
WAITING_ON_CLUSTER: Final = frozenset({QUOTA_EXCEEDED, ROUTER_UNAVAILABLE, SECRET_NOT_USABLE})

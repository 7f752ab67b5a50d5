"""The three kinds: their names, schemas, printer columns and metadata.name limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from inferops.api.application import AIApplicationSpec, AIApplicationStatus
from inferops.api.base import ApiModel, JsonObject
from inferops.api.batch import BatchServiceSpec, BatchServiceStatus
from inferops.api.names import (
    KIND_APPLICATION,
    KIND_BATCH,
    KIND_REALTIME,
    MAX_NAME_LENGTH,
)
from inferops.api.realtime import RealTimeServiceSpec, RealTimeServiceStatus


def _column(
    name: str, path: str, description: str, kind: str = "string", priority: int = 0
) -> JsonObject:
    column: JsonObject = {"name": name, "type": kind, "jsonPath": path, "description": description}
    if priority:
        column["priority"] = priority
    return column


AGE = _column("Age", ".metadata.creationTimestamp", "Time since creation.", "date")
READY_CONDITION = '.status.conditions[?(@.type=="Ready")].status'
# What holds a service back (ImagePullBackOff, Unschedulable, QuotaExceeded, ...), or its
# phase when nothing does; `-o wide` adds the message that names the pod and the cause.
REASON = _column("Reason", '.status.conditions[?(@.type=="Ready")].reason', "Ready's reason.")
MESSAGE = _column("Message", ".status.message", "What the reason concerns.", priority=1)


@dataclass(frozen=True)
class KindInfo:
    """Everything the CRD generator and the validator need to know about one kind."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    description: str
    spec: type[ApiModel]
    status: type[ApiModel]
    printer_columns: tuple[JsonObject, ...]
    max_name_length: int
    dns1035_name: bool


APPLICATION: Final = KindInfo(
    kind=KIND_APPLICATION,
    plural="aiapplications",
    singular="aiapplication",
    short_names=("aiapp",),
    description="An AI application: a model image and its versions, each with the APIs "
    "it serves (the platform's config.json format).",
    spec=AIApplicationSpec,
    status=AIApplicationStatus,
    printer_columns=(
        _column("Versions", ".status.summary", "Normal versions out of all."),
        _column("Ready", READY_CONDITION, "Whether every version is Normal."),
        AGE,
    ),
    max_name_length=MAX_NAME_LENGTH[KIND_APPLICATION],
    dns1035_name=False,
)

REALTIME: Final = KindInfo(
    kind=KIND_REALTIME,
    plural="realtimeservices",
    singular="realtimeservice",
    short_names=("rts",),
    description="A real-time service: an always-on HTTP or WebSocket endpoint whose "
    "traffic is split between AI application versions by exact ratios.",
    spec=RealTimeServiceSpec,
    status=RealTimeServiceStatus,
    printer_columns=(
        _column("Phase", ".status.phase", "Lifecycle phase."),
        REASON,
        _column("Traffic", ".status.traffic", "Traffic split between versions."),
        _column("Rollout", ".status.rollout.summary", "Where spec.rollout stands."),
        _column("Ready", ".status.ready", "Ready instances out of desired."),
        _column("URL", ".status.url", "In-cluster URL."),
        AGE,
        MESSAGE,
    ),
    max_name_length=MAX_NAME_LENGTH[KIND_REALTIME],
    dns1035_name=True,
)

BATCH: Final = KindInfo(
    kind=KIND_BATCH,
    plural="batchservices",
    singular="batchservice",
    short_names=("bs",),
    description="A batch service: runs an AI application version once over every file "
    "in a folder or manifest and writes results plus a SUCCESSFUL/FAILED manifest.",
    spec=BatchServiceSpec,
    status=BatchServiceStatus,
    printer_columns=(
        _column("Phase", ".status.phase", "Lifecycle phase."),
        REASON,
        _column("Progress", ".status.progressSummary", "Sources done out of total."),
        _column("Task", ".status.taskId", "Batch task ID.", priority=1),
        AGE,
        MESSAGE,
    ),
    max_name_length=MAX_NAME_LENGTH[KIND_BATCH],
    dns1035_name=True,
)

ALL_KINDS: Final = {info.kind: info for info in (APPLICATION, REALTIME, BATCH)}

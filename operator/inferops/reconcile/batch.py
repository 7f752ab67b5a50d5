"""Reconciling a BatchService: validate, create the Indexed Job once, suspend, report."""

from __future__ import annotations

from dataclasses import replace

from inferops.api.batch import BatchServiceSpec
from inferops.api.catalog import Catalog
from inferops.api.names import API_VERSION, KIND_BATCH
from inferops.reconcile.batch_status import batch_status
from inferops.reconcile.causes import recheck_in
from inferops.reconcile.common import (
    Outcome,
    applications,
    blocker,
    now,
    write_blocked,
    write_status,
)
from inferops.reconcile.errors import apply_children
from inferops.reconcile.kube import Cluster
from inferops.resources.batch import task_id
from inferops.resources.desired import desired_state, parse_service
from inferops.resources.labels import owner_labels
from inferops.validation.references import version_specs

JOB = ("batch/v1", "Job")


def reconcile_batch(kube: Cluster, catalog: Catalog, namespace: str, name: str) -> Outcome | None:
    obj = kube.get(API_VERSION, KIND_BATCH, namespace, name)
    if obj is None:
        return None
    job = kube.get(*JOB, namespace, name)
    if job is None:
        apps = applications(kube, namespace)
        block = blocker(kube, catalog, obj, apps)
        if block is not None:
            return write_blocked(kube, obj, block)
        service = parse_service(obj, version_specs(apps, namespace))
        apply_children(kube, desired_state(service, catalog))
        job = kube.get(*JOB, namespace, name)  # as applied: the next pass sees its progress
    elif bool(job["spec"].get("suspend")) != bool(obj["spec"].get("stopped")):
        # A Job's pod template is immutable: once it runs, only suspension follows the spec.
        suspend = {"spec": {"suspend": bool(obj["spec"].get("stopped"))}}
        kube.patch(*JOB, namespace, name, suspend)
    spec = BatchServiceSpec.model_validate(obj["spec"])
    pods = kube.list_objects("v1", "Pod", namespace, owner_labels(KIND_BATCH, name))
    status = batch_status(
        spec,
        generation=obj["metadata"].get("generation"),
        old=obj.get("status"),
        job=job,
        pods=pods,
        task=task_id(obj),
        now=now(),
    )
    return replace(write_status(kube, obj, status), recheck=recheck_in(pods, now()))

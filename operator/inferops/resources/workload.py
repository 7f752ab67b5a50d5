"""Pieces shared by model Deployments and batch Jobs: env, resources, probes, model fetch."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from inferops.api.application import AppVersion
from inferops.api.base import EnvVar, StorageSpec
from inferops.api.catalog import Catalog, Flavor, Pool
from inferops.contract.fetch_model import DEFAULT_DEST, FetchModelOptions
from inferops.resources.security import container_security_context

MODEL_DIR = DEFAULT_DEST  # where fetch-model writes and the model container reads
MODEL_VOLUME = "models"
PROBE_PERIOD = 10
AUTHORITY = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*)")


def merge_env(
    defaults: Sequence[EnvVar] | None, overrides: Sequence[EnvVar] | None
) -> list[dict[str, Any]]:
    """The app version's env with the service's entries replacing same-named ones."""
    merged: dict[str, dict[str, Any]] = {}
    for var in [*(defaults or ()), *(overrides or ())]:
        merged[var.name] = var.to_dict()
    return list(merged.values())


def without_userinfo(url: str) -> str:
    """The URL without user:password@. Validation refuses such endpoints; this keeps the
    pod's plain env free of them even for a spec that reached a builder unvalidated."""
    found = AUTHORITY.match(url)
    if found is None or "@" not in found.group(2):
        return url
    return found.group(1) + found.group(2).rpartition("@")[2] + url[found.end() :]


def storage_env(storage: StorageSpec | None) -> list[dict[str, Any]]:
    """Endpoint and credentials of object storage; credentials only by Secret reference."""
    if storage is None:
        return []
    env: list[dict[str, Any]] = []
    if storage.endpoint:
        env.append({"name": "INFEROPS_S3_ENDPOINT", "value": without_userinfo(storage.endpoint)})
    if storage.region:
        env.append({"name": "AWS_REGION", "value": storage.region})
    if storage.secret_ref is not None:
        for key, optional in (
            ("AWS_ACCESS_KEY_ID", False),
            ("AWS_SECRET_ACCESS_KEY", False),
            ("AWS_SESSION_TOKEN", True),
        ):
            env.append(
                {
                    "name": key,
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": storage.secret_ref.name,
                            "key": key,
                            "optional": optional,
                        }
                    },
                }
            )
    return env


def resources(flavor: Flavor) -> dict[str, Any]:
    """Requests equal limits: the flavor is what the instance gets (Guaranteed QoS)."""
    amounts: dict[str, Any] = {"cpu": str(flavor.cpu), "memory": flavor.memory}
    if flavor.gpu:
        amounts[flavor.gpu_resource] = str(flavor.gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def placement(pool: Pool | None) -> dict[str, Any]:
    """nodeSelector and tolerations pinning pods to a pool."""
    if pool is None:
        return {}
    out: dict[str, Any] = {}
    if pool.node_selector:
        out["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        out["tolerations"] = [t.to_dict() for t in pool.tolerations]
    return out


def probes(version: AppVersion, timeout_minutes: int, port: str = "http") -> dict[str, Any]:
    """Readiness from the app's health check; start-up bounded by timeoutMinutes."""
    health = version.health
    get = {"path": health.path, "port": port}
    startup_budget = max(timeout_minutes * 60 - health.initial_delay_seconds, PROBE_PERIOD)
    return {
        "startupProbe": {
            "httpGet": dict(get),
            "initialDelaySeconds": health.initial_delay_seconds,
            "periodSeconds": PROBE_PERIOD,
            "timeoutSeconds": health.timeout_seconds,
            "failureThreshold": math.ceil(startup_budget / PROBE_PERIOD),
        },
        "readinessProbe": {
            "httpGet": dict(get),
            "periodSeconds": health.period_seconds,
            "timeoutSeconds": health.timeout_seconds,
            "failureThreshold": health.failure_threshold,
        },
        "livenessProbe": {
            "httpGet": dict(get),
            "periodSeconds": health.period_seconds,
            "timeoutSeconds": health.timeout_seconds,
            "failureThreshold": max(health.failure_threshold, 3),
        },
    }


def model_container(
    version: AppVersion,
    env: list[dict[str, Any]],
    flavor: Flavor,
    timeout_minutes: int,
    *,
    name: str = "model",
    port_name: str = "http",
) -> dict[str, Any]:
    """The model; its port is named `port_name` (the Service's target unless an agent
    sits in front of it)."""
    container: dict[str, Any] = {
        "name": name,
        "image": version.image,
        "ports": [{"name": port_name, "containerPort": version.port, "protocol": "TCP"}],
        "env": env,
        "resources": resources(flavor),
        "securityContext": container_security_context(),
        # a model that exits says why in its status (the end of its log), and so in ours
        "terminationMessagePolicy": "FallbackToLogsOnError",
        **probes(version, timeout_minutes, port_name),
    }
    if version.command:
        container["command"] = list(version.command)
    if version.args:
        container["args"] = list(version.args)
    if version.model_uri:
        container["volumeMounts"] = [
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True}
        ]
    return container


def model_fetch(
    version: AppVersion, catalog: Catalog, storage: StorageSpec | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(init containers, volumes) fetching modelUri into /mnt/models; empty without one."""
    if not version.model_uri:
        return [], []
    init = {
        "name": "fetch-model",
        "image": catalog.images.inferops,
        "args": FetchModelOptions(version.model_uri, dest=MODEL_DIR).argv(),
        "env": storage_env(storage),
        "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": MODEL_DIR}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": container_security_context(read_only_root=True),
    }
    return [init], [{"name": MODEL_VOLUME, "emptyDir": {}}]

"""A small synchronous client over the kubernetes package: server-side apply, list, prune.

Objects stay plain dicts (what the builders make), addressed by apiVersion and kind.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from inferops.api.kinds import ALL_KINDS
from inferops.api.names import API_VERSION, FIELD_MANAGER

Obj = dict[str, Any]
PLURALS = {
    "Deployment": "deployments",
    "Service": "services",
    "ConfigMap": "configmaps",
    "Job": "jobs",
    "Pod": "pods",
    "Secret": "secrets",
    "Namespace": "namespaces",
    "HTTPRoute": "httproutes",
    "NetworkPolicy": "networkpolicies",
    **{kind: info.plural for kind, info in ALL_KINDS.items()},
}


# Asks the API server for metadata only (the form `kubectl get --show-labels` uses).
PARTIAL_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


class KubeError(Exception):
    """An API call that failed; `status` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_api_client() -> Any:
    """In-cluster credentials when running in a pod, else the kubeconfig ($KUBECONFIG)."""
    try:
        k8s_config.load_incluster_config()
        return k8s.ApiClient()
    except k8s_config.ConfigException:
        return k8s_config.new_client_from_config()


def path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    scope = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    return f"{prefix}{scope}/{PLURALS[kind]}{tail}"


class Cluster(Protocol):
    """The API calls reconcile makes: the real `Kube`, or an in-memory fake in unit tests."""

    def served(self, api_version: str, kind: str) -> bool: ...

    def apply(self, obj: Mapping[str, Any]) -> Obj: ...

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]: ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None: ...

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Obj: ...

    def patch_status(
        self, kind: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Obj: ...

    def get_metadata(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None: ...


class Kube:
    """`Cluster` over the kubernetes package's ApiClient: every call the operator makes."""

    def __init__(self, api_client: Any) -> None:
        self.api = api_client

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        query: Sequence[tuple[str, str]] = (),
        content_type: str = "application/json",
        *,
        accept: str = "application/json",
    ) -> Any:
        try:
            response = self.api.call_api(
                url,
                method,
                query_params=list(query),
                header_params={"Content-Type": content_type, "Accept": accept},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
            )
        except ApiException as exc:
            message = exc.reason or ""
            with contextlib.suppress(TypeError, ValueError, AttributeError):
                message = json.loads(exc.body).get("message", message)
            raise KubeError(int(exc.status or 0), str(message)) from None
        data = response.data
        return json.loads(data) if data else None

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (discovery, which every user may read)."""
        prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        try:
            resources = self.request("GET", prefix) or {}
        except KubeError as exc:
            if exc.status == 404:  # the group or version is not installed at all
                return False
            raise
        return any(r.get("kind") == kind for r in resources.get("resources", []))

    def apply(self, obj: Mapping[str, Any]) -> Obj:
        """Server-side apply with field manager `inferops`, taking ownership of conflicts."""
        meta = obj["metadata"]
        url = path(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
        result: Obj = self.request(
            "PATCH",
            url,
            body=dict(obj),
            query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            content_type="application/apply-patch+yaml",
        )
        return result

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        try:
            result: Obj = self.request("GET", path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def get_metadata(
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        """The object's metadata alone (a PartialObjectMetadata): for a Secret, its labels
        without its data, which never reaches this process."""
        try:
            result: Obj = self.request(
                "GET", path(api_version, kind, namespace, name), accept=PARTIAL_METADATA
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list_objects(
        self,
        api_version: str,
        kind: str,
        namespace: str | None,
        labels: Mapping[str, str] | None = None,
    ) -> list[Obj]:
        query = []
        if labels:
            query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items())))
        try:
            result = self.request("GET", path(api_version, kind, namespace), query=query)
        except KubeError as exc:
            if exc.status == 404:  # the kind is not served here (e.g. no Gateway API)
                return []
            raise
        return list(result.get("items", []))

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> None:
        try:
            self.request(
                "DELETE",
                path(api_version, kind, namespace, name),
                body={"propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if exc.status != 404:
                raise

    def patch(
        self, api_version: str, kind: str, namespace: str, name: str, body: Mapping[str, Any]
    ) -> Obj:
        """A JSON merge patch (RFC 7386) of one object."""
        result: Obj = self.request(
            "PATCH",
            path(api_version, kind, namespace, name),
            body=dict(body),
            content_type="application/merge-patch+json",
        )
        return result

    def patch_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Obj:
        """Merges `status` into the status subresource of one of our own kinds."""
        url = path(API_VERSION, kind, namespace, name) + "/status"
        result: Obj = self.request(
            "PATCH", url, body={"status": dict(status)}, content_type="application/merge-patch+json"
        )
        return result


def prune(
    kube: Cluster,
    kinds: Iterable[tuple[str, str]],
    namespace: str,
    labels: Mapping[str, str],
    keep: Iterable[Mapping[str, Any]],
) -> list[str]:
    """Deletes labelled children of the given kinds that are not in `keep`."""
    wanted = {(o["kind"], o["metadata"]["name"]) for o in keep}
    deleted = []
    for api_version, kind in kinds:
        for child in kube.list_objects(api_version, kind, namespace, labels):
            name = child["metadata"]["name"]
            if (kind, name) not in wanted:
                kube.delete(api_version, kind, namespace, name)
                deleted.append(f"{kind}/{name}")
    return deleted

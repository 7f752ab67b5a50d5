"""Which Secrets a service may pass into its pods.

The operator creates pods that run the user's own image. Without a rule, anyone who may
create an AIApplication and a service could have the operator mount any Secret of the
namespace into such a pod and read it there, Secrets they may not read themselves (a
confused deputy). So a Secret is usable by services only when the namespace says so:

- the Secret carries the label `serving.inferops.dev/usable: "true"` (whoever may label
  a Secret may read it anyway), or
- the Namespace lists its name in the annotation `serving.inferops.dev/usable-secrets`
  (comma-separated; Namespaces are usually edited by cluster administrators only).

Every reference counts: `storage.secretRef`, `valueFrom.secretKeyRef` in the service's env
and in the env of the application versions it runs (the builders merge that env into the
pod). Children set no imagePullSecrets. The webhook and the reconcilers read the Secrets'
metadata (never their data) and pass what they found here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from inferops.api.application import AIApplicationSpec
from inferops.api.base import EnvVar, StorageSpec
from inferops.api.batch import BatchServiceSpec
from inferops.api.names import (
    ANNOTATION_USABLE_SECRETS,
    KIND_APPLICATION,
    KIND_BATCH,
    KIND_REALTIME,
    LABEL_USABLE,
)
from inferops.api.realtime import RealTimeServiceSpec
from inferops.validation.references import ApplicationIndex, namespace_of

Finding = tuple[str, str]

# What the operator found about one Secret.
LISTED: Final = "listed"  # named by the Namespace annotation
LABELLED: Final = "labelled"  # carries the usable label
UNLABELLED: Final = "unlabelled"
MISSING: Final = "missing"
UNREADABLE: Final = "unreadable"  # the operator may not read its metadata (RBAC)
USABLE: Final = frozenset({LISTED, LABELLED})
SecretStates = Mapping[str, str]

HOW = (
    f'label it {LABEL_USABLE}="true", or list it in the Namespace annotation '
    f"{ANNOTATION_USABLE_SECRETS}"
)
NOT_USABLE: Final = "not usable"
MESSAGES: Final = {
    NOT_USABLE: f"Secret {{name!r}} is not usable by services here: {HOW}",
    UNLABELLED: "Secret {name!r} is not marked usable by services (their pods run images "
    f"the operator does not vet): {HOW}",
    MISSING: "Secret {name!r} does not exist in this namespace; a service may use only "
    f"Secrets marked usable ({HOW})",
    UNREADABLE: "Secret {name!r}: the operator may not read its labels (RBAC: get on "
    f"secrets); list it in the Namespace annotation {ANNOTATION_USABLE_SECRETS}",
}


@dataclass(frozen=True)
class SecretRef:
    """One reference to a Secret: where it is, and what it names."""

    path: str
    name: str
    via: str = ""  # what refers to it when that is not the object itself (an app's env)


def listed_secrets(annotations: Mapping[str, Any] | None) -> frozenset[str]:
    """The names in the Namespace annotation (comma-separated, spaces ignored)."""
    text = (annotations or {}).get(ANNOTATION_USABLE_SECRETS)
    if not isinstance(text, str):
        return frozenset()
    return frozenset(n.strip() for n in text.split(",") if n.strip())


def secret_state(metadata: Mapping[str, Any] | None) -> str:
    """LABELLED, UNLABELLED or MISSING, from a Secret's metadata (None: no such Secret)."""
    if metadata is None:
        return MISSING
    labels = metadata.get("labels") or {}
    return LABELLED if labels.get(LABEL_USABLE) == "true" else UNLABELLED


def _env(env: Sequence[EnvVar] | None, path: str, via: str = "") -> Iterator[SecretRef]:
    for j, var in enumerate(env or ()):
        ref = var.value_from.secret_key_ref if var.value_from else None
        if ref is not None:
            where = f"{path}[{j}]" if not via else path
            yield SecretRef(where, ref.name, f"{via} env {var.name}" if via else "")


def _storage(storage: StorageSpec | None) -> Iterator[SecretRef]:
    if storage is not None and storage.secret_ref is not None:
        yield SecretRef("spec.storage.secretRef", storage.secret_ref.name)


def _app_env(
    apps: ApplicationIndex | None, namespace: str, application: str, version: str, path: str
) -> Iterator[SecretRef]:
    app = (apps or {}).get((namespace, application))
    known = app.versions.get(version) if app is not None else None
    if known is not None:
        via = f"application {application!r} version {version!r}"
        yield from _env(known.spec.env, f"{path}.version", via)


def _spec(kind: str, spec: Any) -> Any:
    models: dict[str, type[BaseModel]] = {
        KIND_REALTIME: RealTimeServiceSpec,
        KIND_BATCH: BatchServiceSpec,
        KIND_APPLICATION: AIApplicationSpec,
    }
    model = models.get(kind)
    if model is None:
        return None
    try:
        return model.model_validate(spec)
    except ValidationError:
        return None  # refused for its schema anyway


def secret_references(obj: Mapping[str, Any], apps: ApplicationIndex | None) -> list[SecretRef]:
    """Every Secret the object's pods would get; [] for a spec that does not parse."""
    spec = _spec(str(obj.get("kind")), obj.get("spec"))
    namespace = namespace_of(obj)
    found: list[SecretRef] = []
    if isinstance(spec, RealTimeServiceSpec):
        found += _storage(spec.storage)
        for i, entry in enumerate(spec.versions):
            path = f"spec.versions[{i}]"
            found += _env(entry.env, f"{path}.env")
            found += _app_env(apps, namespace, entry.application, entry.version, path)
    elif isinstance(spec, BatchServiceSpec):
        found += _storage(spec.storage)
        found += _env(spec.env, "spec.env")
        found += _app_env(apps, namespace, spec.application, spec.version, "spec")
    elif isinstance(spec, AIApplicationSpec):
        for i, version in enumerate(spec.versions):
            found += _env(version.env, f"spec.versions[{i}].env")
    return found


def secret_names(refs: Iterable[SecretRef]) -> list[str]:
    return sorted({r.name for r in refs})


def secret_rules(
    refs: Iterable[SecretRef], states: SecretStates, *, disclose: bool = True
) -> Iterator[Finding]:
    """One finding per reference to a Secret that is not usable (a name missing from
    `states` counts as missing). `disclose` False says the same for every such Secret, so
    that a caller the webhook cannot authenticate learns nothing about which exist."""
    for ref in refs:
        state = states.get(ref.name, MISSING)
        if state in USABLE:
            continue
        message = MESSAGES[state if disclose else NOT_USABLE].format(name=ref.name)
        yield ref.path, f"{ref.via}: {message}" if ref.via else message

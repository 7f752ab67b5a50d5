"""Public names of the API: group, version, kinds and labels (a contract, see docs/design.md)."""

from __future__ import annotations

from typing import Final

GROUP: Final = "serving.inferops.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "inferops"
FIELD_MANAGER: Final = "inferops"

KIND_APPLICATION: Final = "AIApplication"
KIND_REALTIME: Final = "RealTimeService"
KIND_BATCH: Final = "BatchService"
KINDS: Final = (KIND_APPLICATION, KIND_REALTIME, KIND_BATCH)

LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_OWNER_KIND: Final = f"{GROUP}/owner-kind"
LABEL_OWNER_NAME: Final = f"{GROUP}/owner-name"
LABEL_APPLICATION: Final = f"{GROUP}/application"
LABEL_VERSION: Final = f"{GROUP}/version"
LABEL_POOL: Final = f"{GROUP}/pool"

ANNOTATION_QUOTA_REALTIME: Final = f"{GROUP}/quota-realtime-services"
ANNOTATION_QUOTA_BATCH: Final = f"{GROUP}/quota-batch-services"
ANNOTATION_QUOTA_PUBLIC_INSTANCES: Final = f"{GROUP}/quota-public-instances"
# Secrets a service may pass into its pods: a Secret labelled usable=true, or one whose
# name the Namespace lists (comma-separated) in the usable-secrets annotation.
LABEL_USABLE: Final = f"{GROUP}/usable"
ANNOTATION_USABLE_SECRETS: Final = f"{GROUP}/usable-secrets"

# Longest metadata.name per kind. A RealTimeService names a Service (a DNS-1035 label, 63
# characters) and its router "<name>-router"; a BatchService names its Job, whose name goes
# into a label value and pod hostnames, so it keeps the 52 characters Kubernetes leaves
# CronJobs for the same reason; an AIApplication name is copied into label values.
MAX_NAME_LENGTH: Final = {KIND_APPLICATION: 63, KIND_REALTIME: 56, KIND_BATCH: 52}
DNS1035_LABEL: Final = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS1123_LABEL: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

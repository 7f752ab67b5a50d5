"""Shared model plumbing: the base class, CEL rule markers and small common types."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from inferops.api.names import DNS1035_LABEL, DNS1123_LABEL

JsonObject = dict[str, Any]


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields refused, no coercion.

    Strict mode keeps Python validation as picky as the API server's schema validation, so
    `"3"` is not accepted where the CRD says integer.
    """

    model_config = ConfigDict(
        strict=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        validate_default=False,
    )

    def to_dict(self) -> JsonObject:
        """The object as the API server would store it (camelCase, unset optionals dropped)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def cel(
    rule: str,
    message: str | None = None,
    *,
    message_expression: str | None = None,
    field_path: str | None = None,
    reason: str | None = None,
) -> JsonObject:
    """One `x-kubernetes-validations` entry (a CEL rule the API server enforces)."""
    entry: JsonObject = {"rule": rule}
    if message is not None:
        entry["message"] = message
    if message_expression is not None:
        entry["messageExpression"] = message_expression
    if field_path is not None:
        entry["fieldPath"] = field_path
    if reason is not None:
        entry["reason"] = reason
    return entry


def rules(*entries: JsonObject) -> JsonObject:
    """`json_schema_extra` carrying CEL rules for a model or field."""
    return {"x-kubernetes-validations": list(entries)}


def default_object() -> JsonObject:
    """`json_schema_extra` for an object field whose own field defaults always apply."""
    return {"default": {}}


MSG_VALUE_FROM_ONE = "valueFrom needs exactly one of secretKeyRef, configMapKeyRef or fieldRef"
MSG_VALUE_XOR = "set either value or valueFrom, not both"


class SecretKeySelector(ApiModel):
    """A key of a Secret in the object's namespace."""

    name: str = Field(description="Name of the Secret.", min_length=1, max_length=253)
    key: str = Field(description="Key within the Secret.", min_length=1, max_length=253)
    optional: bool | None = Field(None, description="Whether the Secret or key may be absent.")


class ConfigMapKeySelector(ApiModel):
    """A key of a ConfigMap in the object's namespace."""

    name: str = Field(description="Name of the ConfigMap.", min_length=1, max_length=253)
    key: str = Field(description="Key within the ConfigMap.", min_length=1, max_length=253)
    optional: bool | None = Field(None, description="Whether the ConfigMap or key may be absent.")


class ObjectFieldSelector(ApiModel):
    """A field of the pod, such as metadata.name or status.podIP."""

    field_path: str = Field(description="Path of the field, e.g. metadata.name.", max_length=253)
    api_version: str | None = Field(None, description="Version of the schema the path is in.")


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: exactly one reference."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef)]"
                ".filter(x, x).size() == 1",
                MSG_VALUE_FROM_ONE,
            )
        )
    )

    secret_key_ref: SecretKeySelector | None = Field(
        None, description="Takes the value from a Secret key (the way to pass credentials)."
    )
    config_map_key_ref: ConfigMapKeySelector | None = Field(
        None, description="Takes the value from a ConfigMap key."
    )
    field_ref: ObjectFieldSelector | None = Field(
        None, description="Takes the value from a field of the pod."
    )


ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


class EnvVar(ApiModel):
    """An environment variable injected into the model container (Kubernetes EnvVar)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            cel(
                "!(has(self.value) && has(self.valueFrom))",
                MSG_VALUE_XOR,
            )
        )
    )

    name: str = Field(
        description="Variable name.", min_length=1, max_length=253, pattern=ENV_NAME_PATTERN
    )
    value: str | None = Field(
        None,
        description="Literal value. Do not put credentials here: use valueFrom.secretKeyRef.",
        max_length=32768,
    )
    value_from: EnvVarSource | None = Field(
        None, description="Reference to a Secret, ConfigMap or pod field."
    )


MAX_ENV = 100


class LocalObjectReference(ApiModel):
    """A reference to an object in the same namespace."""

    name: str = Field(description="Name of the object.", min_length=1, max_length=253)


OBJECT_STORE_URL_PATTERN = r"^https?://[^\s/]+(/.*)?$"


class StorageSpec(ApiModel):
    """Object-storage (S3 API) access for obs:// and s3:// paths."""

    endpoint: str | None = Field(
        None,
        description="S3 API endpoint URL, e.g. https://obs.example.com. Empty: the "
        "operator's default endpoint.",
        max_length=2048,
        pattern=OBJECT_STORE_URL_PATTERN,
    )
    region: str | None = Field(
        None, description="Region name sent in signed requests.", max_length=64
    )
    secret_ref: LocalObjectReference | None = Field(
        None,
        description="Secret holding the keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
        "(and optionally AWS_SESSION_TOKEN). Credentials are only ever passed by reference.",
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(description="Condition type, e.g. Ready or Progressing.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field("", description="Machine-readable CamelCase reason.", max_length=1024)
    message: str = Field("", description="Human-readable detail.", max_length=32768)
    last_transition_time: str | None = Field(
        None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        None, description="The metadata.generation this condition was computed for."
    )


def name_schema(max_length: int, dns1035: bool) -> JsonObject:
    """Schema of metadata.name (the only metadata field a CRD may restrict)."""
    pattern = DNS1035_LABEL if dns1035 else DNS1123_LABEL
    label = "DNS-1035" if dns1035 else "DNS-1123"
    return {
        "type": "string",
        "description": f"A {label} label of at most {max_length} characters.",
        "maxLength": max_length,
        "pattern": pattern,
    }

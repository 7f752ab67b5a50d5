"""What a record may not hold in clear: credentials in query strings and headers.

The proxy forwards everything unchanged; only the record is redacted. A redacted value is
replaced by `[REDACTED]` and the name stays, so a reader still sees that the caller sent
one. Names are compared case-insensitively (query parameter names after percent-decoding,
so `API%5FKEY` is `api_key`); the defaults of `inferops.contract.agent` always apply and a
service adds its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from multidict import MultiMapping

from inferops.contract.agent import (
    DEFAULT_REDACT_HEADERS,
    DEFAULT_REDACT_QUERY_PARAMETERS,
    REDACTED,
    AgentOptions,
    name_list,
)


@dataclass(frozen=True)
class Redaction:
    """The header and query parameter names whose values records never show."""

    headers: frozenset[str]
    query_parameters: frozenset[str]

    @classmethod
    def of(cls, options: AgentOptions) -> Redaction:
        return cls(
            frozenset(name_list((*DEFAULT_REDACT_HEADERS, *options.redact_headers))),
            frozenset(
                name_list((*DEFAULT_REDACT_QUERY_PARAMETERS, *options.redact_query_parameters))
            ),
        )

    def query(self, query_string: str) -> str:
        """The raw query string with the values of redacted parameters replaced; every other
        byte as sent (order, encoding and separators kept)."""
        if not query_string:
            return query_string
        return "&".join(self._parameter(part) for part in query_string.split("&"))

    def _parameter(self, part: str) -> str:
        name, has_value, _ = part.partition("=")
        if has_value and unquote_plus(name).strip().lower() in self.query_parameters:
            return f"{name}={REDACTED}"
        return part

    def headers_of(self, headers: MultiMapping[str]) -> dict[str, str]:
        """The headers as a record holds them: lower-case names, repeated ones joined with
        ", " (RFC 9110 section 5.3), redacted ones as `[REDACTED]`."""
        out: dict[str, list[str]] = {}
        for name, value in headers.items():
            lowered = name.lower()
            out.setdefault(lowered, []).append(REDACTED if lowered in self.headers else value)
        return {
            name: REDACTED if name in self.headers else ", ".join(values)
            for name, values in out.items()
        }

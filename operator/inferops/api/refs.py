"""Field types shared by both service kinds: which application version, which flavor."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from inferops.api.application import VERSION_PATTERN
from inferops.api.names import DNS1123_LABEL

ApplicationRef = Annotated[
    str,
    Field(
        description="Name of the AIApplication in the same namespace.",
        pattern=DNS1123_LABEL,
        max_length=63,
    ),
]
VersionRef = Annotated[
    str,
    Field(
        description="Version of the application (must be Normal).",
        pattern=VERSION_PATTERN,
        max_length=63,
    ),
]

"""What the steps of the tour share: the work folder, the processes, the service's versions."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INDENT = "      "


@dataclass
class LocalVersion:
    """One version of the service, running as a local model server."""

    application: str
    version: str
    ratio: int
    upstream: str  # the operator's name for the version's Service and nginx upstream
    env: dict[str, str]  # the model container's env (values from Secrets do not apply)
    address: str = ""

    @property
    def label(self) -> str:
        return f"{self.application} {self.version}"


@dataclass
class Demo:
    examples: Path
    work_dir: Path
    stack: contextlib.ExitStack
    service: str = ""
    versions: list[LocalVersion] = field(default_factory=list)
    applications: dict[str, dict[str, Any]] = field(default_factory=dict)

"""The report a batch worker leaves in its container's termination message, which the
operator's status code reads: counts and the manifests it wrote.

Kubernetes keeps at most 4096 bytes of a termination message. A worker's manifests are
numbered chunks of one name (`<base>.manifest`, `<base>_<m>.manifest`, m = k*n + i), so a
long list is sent as the common base and arithmetic runs of chunk numbers, which the reader
expands back: the status lists every manifest however many a worker wrote. Only a list
that does not follow that naming (never written by the worker) is cut, and says so.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

MAX_MESSAGE_BYTES = 4096
MANIFEST_SUFFIX = ".manifest"
_CHUNK = re.compile(r"^(?P<base>.+?)(?:_(?P<number>[1-9][0-9]{0,8}))?\.manifest$")
# Bounds what a reader expands from a (hostile) message.
MAX_EXPANDED_MANIFESTS = 100_000


def manifest_name(base: str, number: int) -> str:
    """Chunk `number` of the manifest `base` (the first one has no number)."""
    return f"{base}{MANIFEST_SUFFIX}" if number == 0 else f"{base}_{number}{MANIFEST_SUFFIX}"


class WorkerReport(BaseModel):
    """What one worker did; also written as `{"error": ...}` when it could not run."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)

    total: int = Field(0, ge=0)
    succeeded: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    manifests: list[str] = Field(default_factory=list)
    # Set when the manifest list did not fit and could not be compacted.
    manifests_truncated: bool = False
    error: str | None = None

    def message(self) -> str:
        """The termination message: at most MAX_MESSAGE_BYTES, every manifest kept when the
        names follow the worker's chunk naming."""
        text = _compact_json(self._wire(self.manifests))
        if _fits(text):
            return text
        runs = _runs_of(self.manifests)
        if runs is not None:
            base, numbers = runs
            compact = {**self._wire(None), "manifest_base": base, "manifest_runs": numbers}
            text = _compact_json(compact)
            if _fits(text):
                return text
        kept: list[str] = []
        for name in self.manifests:
            if not _fits(_compact_json(self._wire([*kept, name], truncated=True))):
                break
            kept.append(name)
        return _compact_json(self._wire(kept, truncated=True))

    def _wire(self, manifests: list[str] | None, truncated: bool = False) -> dict[str, Any]:
        if self.error is not None and not self.total and not self.manifests:
            return {"error": self.error}
        data: dict[str, Any] = {
            "total": self.total,
            "succeeded": self.succeeded,
            "failed": self.failed,
        }
        if manifests is not None:
            data["manifests"] = manifests
        if truncated or self.manifests_truncated:
            data["manifests_truncated"] = True
        if self.error is not None:
            data["error"] = self.error
        return data

    @classmethod
    def parse(cls, text: str) -> WorkerReport | None:
        """The report in a termination message; None when it is not one."""
        if len(text.encode()) > MAX_MESSAGE_BYTES:
            return None
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        expanded = _expand(data.pop("manifest_base", None), data.pop("manifest_runs", None))
        if expanded is not None:
            data["manifests"] = expanded
        try:
            return cls.model_validate(data)
        except ValidationError:
            return None


def _compact_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


def _fits(text: str) -> bool:
    return len(text.encode()) <= MAX_MESSAGE_BYTES


def _runs_of(names: list[str]) -> tuple[str, list[list[int]]] | None:
    """(base, [[first, step, count], ...]) naming exactly `names` in order, if they share a
    base; None otherwise."""
    numbers: list[int] = []
    base: str | None = None
    for name in names:
        match = _CHUNK.match(name)
        if match is None or (base is not None and match["base"] != base):
            return None
        base = match["base"]
        numbers.append(int(match["number"] or 0))
    if base is None:
        return None
    runs: list[list[int]] = []
    for number in numbers:
        if runs and runs[-1][2] == 1 and number > runs[-1][0]:
            runs[-1][1:] = [number - runs[-1][0], 2]
        elif runs and number == runs[-1][0] + runs[-1][1] * runs[-1][2]:
            runs[-1][2] += 1
        else:
            runs.append([number, 1, 1])
    if [manifest_name(base, m) for m in _numbers(runs)] != names:
        return None  # a name whose number the base reading changed: send the names
    return base, runs


def _numbers(runs: list[list[int]]) -> list[int]:
    return [first + step * k for first, step, count in runs for k in range(count)]


def _expand(base: Any, runs: Any) -> list[str] | None:
    if not isinstance(base, str) or not isinstance(runs, list):
        return None
    total = 0
    for run in runs:
        if not (
            isinstance(run, list)
            and len(run) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in run)
        ):
            return None
        total += run[2]
    if total > MAX_EXPANDED_MANIFESTS:
        return None
    return [manifest_name(base, m) for m in _numbers(runs)]

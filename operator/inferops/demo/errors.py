"""The demo's one error: a step that cannot go on."""

from __future__ import annotations


class DemoError(Exception):
    """A step that cannot go on; the message says why."""

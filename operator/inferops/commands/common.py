"""Exit codes and the error line shared by the operator's commands."""

from __future__ import annotations

import sys

EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def fail(message: str, code: int = EXIT_UNREADABLE) -> int:
    """Prints `inferops: message` on stderr; returns `code`."""
    print(f"inferops: {message}", file=sys.stderr)
    return code

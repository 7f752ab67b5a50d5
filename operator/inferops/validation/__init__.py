"""Every validation rule in one place, used by the CLI, the webhook and the handlers."""

from inferops.validation.document import ValidationContext, identify, validate_object
from inferops.validation.problems import Problem
from inferops.validation.references import KnownApplication, known_application

__all__ = [
    "KnownApplication",
    "Problem",
    "ValidationContext",
    "identify",
    "known_application",
    "validate_object",
]

"""Thin Kopf registrations: read, call reconcile, patch status. Importing registers them."""

from inferops.handlers import applications, settings

__all__ = ["applications", "settings"]

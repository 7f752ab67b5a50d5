"""Thin Kopf registrations: read, call reconcile, patch status. Importing registers them."""

from inferops.handlers import applications, clients, realtime, settings

__all__ = ["applications", "clients", "realtime", "settings"]

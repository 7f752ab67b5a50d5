"""Thin Kopf registrations: read, call reconcile, patch status. Importing registers them.

The admission webhooks (`inferops.handlers.admission`) register only when the operator
serves them: Kopf refuses to start with admission handlers and no webhook server.
"""

from inferops.handlers import applications, batch, clients, quota, realtime, settings

__all__ = ["applications", "batch", "clients", "quota", "realtime", "settings"]

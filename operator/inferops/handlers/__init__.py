"""Thin Kopf registrations: events queue passes, workers run them. Importing registers them.

The admission webhooks (`inferops.handlers.admission`) register only when the operator
serves them: Kopf refuses to start with admission handlers and no webhook server.
"""

from inferops.handlers import controller, settings, triggers

__all__ = ["controller", "settings", "triggers"]

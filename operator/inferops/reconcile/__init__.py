"""Desired versus actual state: status computation, server-side apply, pruning."""

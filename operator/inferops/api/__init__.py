"""Typed models of the Inferops API: the single source of truth for the CRD schemas."""

"""Inferops: machine-learning models as Kubernetes custom resources."""

__version__ = "0.1.0"

"""Pure builders: spec in, Kubernetes objects (plain dicts) out. No I/O, no Kopf, no client."""

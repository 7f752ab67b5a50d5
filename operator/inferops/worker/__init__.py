"""The batch worker: sources, mapping, requests and manifests (never imports the operator)."""

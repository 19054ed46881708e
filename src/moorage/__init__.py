"""Moorage: deploy a multi-service application to Kubernetes, reliably."""

__version__ = "0.1.0"

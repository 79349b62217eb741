"""mesh-exporter: Istio service figures from Prometheus to Datadog."""

__version__ = "0.1.0"

"""Local stand-ins for the world the exporter talks to: a synthetic mesh in a real Prometheus,
a Kubernetes API and a Datadog intake on loopback. Used by the tests, `make demo` and `bench/`."""

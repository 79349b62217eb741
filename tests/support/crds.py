"""JSON schemas of the Prometheus Operator CRDs (monitoring.coreos.com/v1), for the fields deploy/ uses.

Transcribed from the operator's CRD openAPIV3Schema (types, patterns, enums, required fields); objects
here forbid fields they do not list, so a misspelt or unsupported field fails instead of being ignored.
"""

from __future__ import annotations

from typing import Any

_UNITS = "".join(f"(([0-9]+){unit})?" for unit in ("y", "w", "d", "h", "m", "s", "ms"))
DURATION = {"type": "string", "pattern": f"^(0|{_UNITS})$"}
STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "namespace": {"type": "string"},
        "labels": STRINGS,
        "annotations": STRINGS,
    },
    "additionalProperties": False,
}


def _object(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


POD_MONITOR = _object(
    "PodMonitor",
    {
        "type": "object",
        "required": ["selector"],
        "properties": {
            "selector": {
                "type": "object",
                "properties": {"matchLabels": STRINGS},
                "additionalProperties": False,
            },
            "namespaceSelector": {
                "type": "object",
                "properties": {
                    "any": {"type": "boolean"},
                    "matchNames": {"type": "array", "items": {"type": "string"}},
                },
                "additionalProperties": False,
            },
            "podMetricsEndpoints": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "port": {"type": "string"},
                        "portNumber": {"type": "integer", "minimum": 1, "maximum": 65535},
                        "path": {"type": "string"},
                        "interval": DURATION,
                        "scrapeTimeout": DURATION,
                        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                        "honorLabels": {"type": "boolean"},
                    },
                    "additionalProperties": False,
                },
            },
        },
        "additionalProperties": False,
    },
)

PROMETHEUS_RULE = _object(
    "PrometheusRule",
    {
        "type": "object",
        "properties": {
            "groups": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "interval": DURATION,
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["expr"],
                                "properties": {
                                    "alert": {"type": "string"},
                                    "record": {"type": "string"},
                                    "expr": {"type": ["string", "integer"]},
                                    "for": DURATION,
                                    "keep_firing_for": {**DURATION, "minLength": 1},
                                    "labels": STRINGS,
                                    "annotations": STRINGS,
                                },
                                "additionalProperties": False,
                            },
                        },
                    },
                    "additionalProperties": False,
                },
            }
        },
        "additionalProperties": False,
    },
)

SCHEMAS = {"PodMonitor": POD_MONITOR, "PrometheusRule": PROMETHEUS_RULE}

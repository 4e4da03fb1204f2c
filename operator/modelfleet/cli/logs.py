"""structlog JSON logs for the operator, kopf's own log records included.

Every line about an object carries its namespace and name: structlog calls bind them, and
kopf's records carry them in `k8s_ref`, which is lifted into the line here.
"""

from __future__ import annotations

import logging
import sys

import structlog

_SECRET_KEYS = frozenset({"api_key", "key", "token", "authorization", "password"})


def _drop_secrets(_, __, event_dict):
    for name in list(event_dict):
        if name.lower() in _SECRET_KEYS:
            event_dict[name] = "[redacted]"
    return event_dict


def _kopf_object(_, __, event_dict):
    record = event_dict.get("_record")
    ref = getattr(record, "k8s_ref", None) if record is not None else None
    if isinstance(ref, dict):
        event_dict.setdefault("namespace", ref.get("namespace"))
        event_dict.setdefault("name", ref.get("name"))
        event_dict.setdefault("kind", ref.get("kind"))
    return event_dict


def configure_logging(level: str = "INFO", stream=None) -> None:
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _drop_secrets,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, _kopf_object],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

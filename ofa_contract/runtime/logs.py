"""Structured logs, and the naming rules for loggers and metrics.

Naming rules (one scheme for every process, so JSON logs and dashboards group cleanly):

- loggers: ``ofa_serving.<component>.<module>`` via :func:`get_logger` (component = ``splitter``,
  ``bridge``, ``edge``, ``router``, ``dev``, ``simulator``, ``contract``); fields go in
  ``extra={...}``, which :class:`JsonFormatter` turns into top-level keys.
- metrics: ``ofa_<component>_<name>`` via :func:`metric_name` (e.g. ``ofa_edge_connections``).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

_STD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message"}

#: Root of every logger name of ofa-serving.
LOGGER_ROOT = "ofa_serving"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={...}`` fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in record.__dict__.items():
            if key not in _STD_ATTRS and not key.startswith("_"):
                doc[key] = val
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(doc, enc_hook=str).decode()


def setup_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Configure the root logger once for a process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at WARNING/ERROR; keep them but not their chatter.
    # httpx/httpcore log every request at INFO ("HTTP Request: GET .../ready 503"): the ready
    # polls of `dev` and the tests, and the router's proxy requests, are not news.
    for chatty in ("aiokafka", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def logger_name(component: str, module: str = "") -> str:
    """``ofa_serving.<component>[.<module>]``; ``module`` may be a dotted ``__name__``, whose
    last part is used (``edge.fanout`` -> ``ofa_serving.edge.fanout``)."""
    tail = module.rsplit(".", 1)[-1] if module else ""
    parts = [LOGGER_ROOT, component]
    if tail and tail != component:
        parts.append(tail)
    return ".".join(parts)


def get_logger(component: str, module: str = "") -> logging.Logger:
    """The logger of ``module`` in ``component`` (see :func:`logger_name`)."""
    return logging.getLogger(logger_name(component, module))


def metric_name(component: str, name: str) -> str:
    """``ofa_<component>_<name>``: the one metric naming scheme (Prometheus style)."""
    return f"ofa_{component}_{name}"

"""The process runtime every component shares.

Kept light (no nats, aiokafka, uvicorn or litestar import here, so ``ofa-serving infra status``
stays fast); the heavier pieces live in submodules:

- :mod:`.logs`: ``setup_logging``, ``JsonFormatter``, ``get_logger`` and the naming rules
- :mod:`.metrics`: ``MetricSet``, ``MetricFactory`` (the ``ofa_<component>_*`` metrics;
  imports prometheus_client)
- :mod:`.signals`: ``install_stop_signals``
- :mod:`.ops`: ``OpsServer``, ``ops_answer``, ``ops_routes`` (Litestar)
- :mod:`.tasks`: ``cancel_and_wait``, ``BackgroundTasks``
- :mod:`.waiting`: ``wait_for_service``, ``Backoff``
- :mod:`.connect`: ``connect_nats``, ``ReconnectPolicy`` (imports nats)
- :mod:`.rebalance`: ``GuardedRebalanceListener`` (imports aiokafka)
- :mod:`.serve`: ``run_uvicorn``, ``build_server``, ``serve``, ``cors_config`` (imports uvicorn,
  litestar)
"""

from ofa_contract.runtime.logs import (
    JsonFormatter,
    get_logger,
    logger_name,
    metric_name,
    setup_logging,
)
from ofa_contract.runtime.ops import (
    OPS_PATHS,
    OpsAnswer,
    OpsServer,
    ReadyCheck,
    ops_answer,
    ops_routes,
    ready_issues,
)
from ofa_contract.runtime.signals import install_stop_signals
from ofa_contract.runtime.tasks import BackgroundTasks, cancel_and_wait
from ofa_contract.runtime.waiting import Backoff, wait_for_service

__all__ = [
    "OPS_PATHS",
    "BackgroundTasks",
    "Backoff",
    "JsonFormatter",
    "OpsAnswer",
    "OpsServer",
    "ReadyCheck",
    "cancel_and_wait",
    "get_logger",
    "install_stop_signals",
    "logger_name",
    "metric_name",
    "ops_answer",
    "ops_routes",
    "ready_issues",
    "setup_logging",
    "wait_for_service",
]

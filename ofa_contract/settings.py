"""Settings from environment variables, validated with msgspec.

Each process declares a ``msgspec.Struct`` whose fields have defaults and whose class variable
``env_prefix`` names its variables: field ``port`` of a Struct with ``env_prefix = "EDGE_"`` is
``EDGE_PORT``. :func:`from_env` fills the Struct; a bad value raises :class:`SettingsError` naming
the variable (the CLI exits 2). Constraints are declarative: use :data:`PositiveInt`,
:data:`Port`, ``Literal[...]`` and friends instead of ``__post_init__`` checks.

Optional class variables:

- ``env_names: ClassVar[dict[str, str]]``: field -> variable, for names that do not follow
  ``<prefix><FIELD>`` (e.g. ``Layout.namespace`` is ``OFA_NAMESPACE``).
- ``env_aliases: ClassVar[dict[str, tuple[str, ...]]]``: field -> old variable names still
  accepted for one release; using one logs one deprecation line per process.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

import msgspec

S = TypeVar("S", bound=msgspec.Struct)

log = logging.getLogger("ofa_serving.contract.settings")

#: An integer > 0.
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]
#: An integer >= 0.
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
#: A TCP port; 0 lets the OS pick one.
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
#: A non-empty string.
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
#: A duration in seconds, > 0.
Seconds = Annotated[float, msgspec.Meta(gt=0)]
#: A duration in seconds, >= 0 (0 usually means "off").
NonNegativeSeconds = Annotated[float, msgspec.Meta(ge=0)]
#: A rate or other real number > 0.
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
#: A rate or other real number >= 0.
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LogFormat = Literal["json", "text"]

#: Exit status of a process whose configuration is wrong.
CONFIG_ERROR_EXIT = 2

_warned: set[str] = set()


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""

    exit_code = CONFIG_ERROR_EXIT


def env_name(prefix: str, field: str) -> str:
    """The environment variable ``<prefix><FIELD>``."""
    return f"{prefix}{field}".upper()


def env_prefix(cls: type[msgspec.Struct]) -> str:
    """The ``env_prefix`` class variable of a settings Struct ("" when it declares none)."""
    return str(getattr(cls, "env_prefix", ""))


def env_var(cls: type[msgspec.Struct], field: str, prefix: str | None = None) -> str:
    """The environment variable that sets ``field`` of ``cls``."""
    names: dict[str, str] = getattr(cls, "env_names", {})
    if field in names:
        return names[field]
    return env_name(env_prefix(cls) if prefix is None else prefix, field)


def _coerce(raw: str, annotation: Any) -> Any:
    """Turn an environment string into something msgspec can convert to ``annotation``.

    Lists and dicts are given as JSON or, for lists of strings, comma-separated.
    """
    text = raw.strip()
    if get_origin(annotation) is Literal:
        # LOG_LEVEL=info means INFO: enum-like values match case-insensitively.
        for choice in get_args(annotation):
            if isinstance(choice, str) and choice.lower() == text.lower():
                return choice
        return text
    if text[:1] in ("[", "{"):
        return msgspec.json.decode(text)
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, tuple, frozenset, set):
        return [part.strip() for part in text.split(",") if part.strip()]
    if text.lower() in ("true", "yes", "on") and annotation in (bool, bool | None):
        return True
    if text.lower() in ("false", "no", "off") and annotation in (bool, bool | None):
        return False
    return text


def _lookup(cls: type[msgspec.Struct], field: str, var: str, env: Mapping[str, str]) -> str | None:
    """The variable actually set for ``field``: ``var`` or, failing that, a deprecated alias."""
    if env.get(var, "") != "":
        return var
    aliases: dict[str, tuple[str, ...]] = getattr(cls, "env_aliases", {})
    for old in aliases.get(field, ()):
        if env.get(old, "") != "":
            if old not in _warned:
                _warned.add(old)
                log.warning(
                    "%s is deprecated and will be removed in the next release; use %s",
                    old,
                    var,
                    extra={"variable": old, "replacement": var},
                )
            return old
    return None


def from_env(
    cls: type[S], prefix: str | None = None, environ: Mapping[str, str] | None = None
) -> S:
    """Build ``cls`` from environment variables; raise :class:`SettingsError` on a bad value.

    ``prefix`` overrides the class's ``env_prefix`` (kept for callers that still pass it).
    """
    env = os.environ if environ is None else environ
    fields = msgspec.structs.fields(cls)
    values: dict[str, Any] = {}
    used: dict[str, str] = {}
    for f in fields:
        name = _lookup(cls, f.name, env_var(cls, f.name, prefix), env)
        if name is None:
            continue
        used[f.name] = name
        try:
            values[f.name] = _coerce(env[name], f.type)
        except msgspec.DecodeError as exc:
            raise SettingsError(f"{name}={env[name]!r} is not valid JSON: {exc}") from None
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `int` >= 1 - at `$.port`": point at the variable.
        msg = str(exc)
        for f in fields:
            if msg.endswith(f"`$.{f.name}`") or f"`$.{f.name}[" in msg:
                name = used.get(f.name, env_var(cls, f.name, prefix))
                raise SettingsError(
                    f"bad value for {name}={env.get(name)!r}: {msg.rsplit(' - at', 1)[0]}"
                ) from None
        raise SettingsError(f"bad settings for {cls.__name__}: {msg}") from None


def _type_name(annotation: Any) -> str:
    """A short readable name of a field type (constraints shown, Annotated unwrapped)."""
    metas = getattr(annotation, "__metadata__", ())
    base = getattr(annotation, "__origin__", annotation) if metas else annotation
    name = getattr(base, "__name__", str(base).replace("typing.", ""))
    if getattr(base, "__origin__", None) is Literal:
        name = " / ".join(repr(a) for a in base.__args__)
    for meta in metas:
        if isinstance(meta, msgspec.Meta):
            bounds = [
                f"{op} {getattr(meta, attr)}"
                for attr, op in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
                if getattr(meta, attr) is not None
            ]
            if meta.min_length is not None:
                bounds.append(f"length >= {meta.min_length}")
            name += f" ({', '.join(bounds)})" if bounds else ""
    return name


def describe(cls: type[msgspec.Struct], prefix: str | None = None) -> list[tuple[str, str, str]]:
    """(variable, default, type) rows for documentation and `--help` output."""
    rows = []
    for f in msgspec.structs.fields(cls):
        default: Any = f.default if f.default is not msgspec.NODEFAULT else "(required)"
        if f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        rows.append((env_var(cls, f.name, prefix), repr(default), _type_name(f.type)))
    return rows


def settings_help(cls: type[msgspec.Struct], what: str = "") -> str:
    """The one ``--help`` text style for a process's settings (use with argparse's
    ``RawDescriptionHelpFormatter``): what it is, then every variable with its default."""
    prefix = env_prefix(cls)
    head = f"{what}\n\n" if what else ""
    rows = "\n".join(f"  {var} (default {default})" for var, default, _ in describe(cls))
    where = f"{prefix}* variables" if prefix else "variables"
    return f"{head}Settings come from {where} (see compose/ENVIRONMENT.md):\n{rows}"


def settings_parser(
    prog: str, cls: type[msgspec.Struct], what: str, *, listen: bool = False
) -> argparse.ArgumentParser:
    """The argument parser of ``ofa-serving <command>``, its ``--help`` in :func:`settings_help`'s
    style; the caller adds the options the command takes besides its environment variables.

    ``listen``: the command serves HTTP, and ``--host``/``--port`` override ``<PREFIX>HOST`` and
    ``<PREFIX>PORT`` (apply them with :func:`with_listen_args`).
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description=settings_help(cls, what),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if listen:
        parser.add_argument("--host", help=f"overrides {env_var(cls, 'host')}")
        parser.add_argument("--port", type=int, help=f"overrides {env_var(cls, 'port')}")
    return parser


def with_listen_args(settings: S, args: argparse.Namespace) -> S:
    """``settings`` with ``host``/``port`` replaced by the ``--host``/``--port`` given."""
    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port is not None:
        changes["port"] = args.port
    return msgspec.structs.replace(settings, **changes) if changes else settings


def deprecated_aliases(cls: type[msgspec.Struct]) -> dict[str, str]:
    """old variable -> new variable, for documentation."""
    aliases: dict[str, tuple[str, ...]] = getattr(cls, "env_aliases", {})
    return {old: env_var(cls, f) for f, olds in aliases.items() for old in olds}


class CommonSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Connection settings every process shares (no prefix: ``KAFKA_BOOTSTRAP_SERVERS``...)."""

    env_prefix: ClassVar[str] = ""

    #: Kafka bootstrap servers, comma-separated host:port.
    kafka_bootstrap_servers: NonEmptyStr = "127.0.0.1:9092"
    #: NATS server URL(s), comma-separated.
    nats_url: NonEmptyStr = "nats://127.0.0.1:4222"
    #: Topic OpenFactory writes every asset event to.
    input_topic: NonEmptyStr = "ofa_assets"
    #: DEBUG, INFO, WARNING, ERROR or CRITICAL.
    log_level: LogLevel = "INFO"
    #: "json" for one JSON object per line, "text" for humans; unset: text on a terminal,
    #: json otherwise.
    log_format: LogFormat = "json"


class HttpServiceSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What every process serving HTTP to clients (edge, router) reads under its own prefix;
    a subclass declares ``env_prefix`` and its own default ``port``."""

    #: Interface to listen on; containers set ``0.0.0.0``.
    host: NonEmptyStr = "127.0.0.1"
    #: TCP port; 0 picks a free port.
    port: Port = 0
    #: Origins allowed by CORS on every route (e.g. ``https://dashboards.example``, comma-separated
    #: or a JSON list; ``*`` allows any); empty = CORS off. In the router's redirect mode the
    #: edges must allow the origin ``null`` (``EDGE_CORS_ORIGINS``): see the README.
    cors_origins: list[str] = msgspec.field(default_factory=list)
    #: ``Retry-After`` seconds sent with a 503 (edge full, or no edge serves the group).
    retry_after_s: NonNegativeInt = 2
    #: Seconds uvicorn waits for open streams to end after SIGTERM before closing them.
    shutdown_grace_s: NonNegativeSeconds = 5.0


class KafkaWorkerSettings(msgspec.Struct, kw_only=True, frozen=True):
    """What every Kafka consumer-group process without a public HTTP API (splitter, bridge)
    reads under its own prefix; a subclass declares ``env_prefix`` and its defaults."""

    #: Kafka consumer group session timeout (ms): how fast a killed instance's partitions move.
    session_timeout_ms: PositiveInt = 10000
    #: Kafka consumer group heartbeat interval (ms).
    heartbeat_interval_ms: PositiveInt = 3000
    #: Kafka request timeout (ms) of the splitter's or bridge's clients: how long a request to a
    #: broker that stopped answering (cut off, paused) waits before the connection is dropped and
    #: the request retried. Never below session_timeout_ms + 5000 (a JoinGroup may wait that
    #: long). 15000 was tried against cut-off and paused brokers and did not shorten the stalls
    #: (docs/decisions.md), so aiokafka's default stays.
    request_timeout_ms: PositiveInt = 40000

    @property
    def client_request_timeout_ms(self) -> int:
        """``request_timeout_ms``, raised to what a JoinGroup needs; for every Kafka client."""
        return max(self.request_timeout_ms, self.session_timeout_ms + 5000)

    def group_options(self) -> dict[str, int]:
        """The consumer options these settings give (group membership and request timeout)."""
        return {
            "session_timeout_ms": self.session_timeout_ms,
            "heartbeat_interval_ms": self.heartbeat_interval_ms,
            "request_timeout_ms": self.client_request_timeout_ms,
        }

    #: Operations HTTP server (/health /ready /metrics); port 0 = pick a free port.
    ops_host: NonEmptyStr = "127.0.0.1"
    ops_port: Port = 0

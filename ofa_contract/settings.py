"""Settings from environment variables, validated with msgspec.

Each process declares a ``msgspec.Struct`` whose fields have defaults; :func:`from_env` fills it
from ``<PREFIX><FIELD NAME IN UPPER CASE>`` variables. A bad value stops start-up with a message
naming the variable, the value and what was expected, instead of failing later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

T = TypeVar("T", bound=msgspec.Struct)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the environment variable."""


def env_name(prefix: str, field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"{prefix}{field}".upper()


def _coerce(raw: str, annotation: Any) -> Any:
    """Turn an environment string into something msgspec can convert to ``annotation``.

    Lists and dicts are given as JSON or, for lists of strings, comma-separated.
    """
    text = raw.strip()
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


def from_env(cls: type[T], prefix: str = "", environ: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` from environment variables; raise :class:`SettingsError` on a bad value."""
    env = os.environ if environ is None else environ
    hints = msgspec.structs.fields(cls)
    values: dict[str, Any] = {}
    for f in hints:
        name = env_name(prefix, f.name)
        if name in env and env[name] != "":
            try:
                values[f.name] = _coerce(env[name], f.type)
            except msgspec.DecodeError as exc:
                raise SettingsError(f"{name}={env[name]!r} is not valid JSON: {exc}") from None
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec says e.g. "Expected `int`, got `str` - at `$.port`": point at the variable.
        msg = str(exc)
        for f in hints:
            if msg.endswith(f"`$.{f.name}`"):
                name = env_name(prefix, f.name)
                raise SettingsError(
                    f"bad value for {name}={env.get(name)!r}: {msg.rsplit(' - at', 1)[0]}"
                ) from None
        raise SettingsError(f"bad settings for {cls.__name__}: {msg}") from None


def describe(cls: type[msgspec.Struct], prefix: str = "") -> list[tuple[str, str, str]]:
    """(variable, default, type) rows for documentation and `--help` output."""
    rows = []
    for f in msgspec.structs.fields(cls):
        default = f.default if f.default is not msgspec.NODEFAULT else "(required)"
        if f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        type_name = getattr(f.type, "__name__", str(f.type))
        rows.append((env_name(prefix, f.name), repr(default), type_name))
    return rows


class CommonSettings(msgspec.Struct, kw_only=True, frozen=True):
    """Connection settings every process shares (no prefix: ``KAFKA_BOOTSTRAP_SERVERS``...)."""

    #: Kafka bootstrap servers, comma-separated host:port.
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    #: NATS server URL(s), comma-separated.
    nats_url: str = "nats://127.0.0.1:4222"
    #: Topic OpenFactory writes every asset event to.
    input_topic: str = "ofa_assets"
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"
    #: "json" for one JSON object per line (production), "text" for humans.
    log_format: str = "json"

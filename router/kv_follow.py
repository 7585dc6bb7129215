"""Follow a NATS KV bucket of msgspec-typed registrations (edges, bridge workers) in memory.

Registrations are heartbeat-refreshed by their owners. A watcher delivers every put and delete
as it happens, so lookups never query NATS. Liveness is judged by when an update was *received*
here (immune to clock skew between hosts); for the values present at start-up, which may be
left over from a process that died, the entry's own ``updated_ms`` is used instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import msgspec
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from ofa_contract.runtime import cancel_and_wait, get_logger

log = get_logger("router", __name__)

T = TypeVar("T", bound=msgspec.Struct)

KV_DEL = "DEL"
KV_PURGE = "PURGE"


class Registration(msgspec.Struct, Generic[T]):
    """One entry as seen by this process."""

    value: T
    #: time.monotonic() at which the entry counts as last refreshed
    seen: float


@dataclasses.dataclass(eq=False)
class KvFollower(Generic[T]):
    """Keeps ``key -> value`` of one bucket, following it with a KV watcher."""

    #: Returns the JetStream context of the current connection (raises while there is none).
    js_getter: Callable[[], Any]
    bucket: str
    type_: type[T]
    stale_s: float
    #: Called with the key of every entry that appeared, changed or went away.
    on_change: Callable[[str], None] | None = None
    kv: KeyValue | None = dataclasses.field(default=None, init=False)
    watching: bool = dataclasses.field(default=False, init=False)
    last_error: str = dataclasses.field(default="", init=False)
    bad_values: int = dataclasses.field(default=0, init=False)
    _entries: dict[str, Registration[T]] = dataclasses.field(default_factory=dict, init=False)
    _task: asyncio.Task[None] | None = dataclasses.field(default=None, init=False)

    def start(self) -> None:
        """Start following in the background (the bucket may not exist yet)."""
        self._task = asyncio.create_task(self._run(), name=f"kv-follow-{self.bucket}")

    async def stop(self) -> None:
        """Stop following."""
        await cancel_and_wait(self._task)
        self._task = None

    def live(self) -> dict[str, T]:
        """Entries refreshed within the staleness window."""
        horizon = time.monotonic() - self.stale_s
        return {k: r.value for k, r in self._entries.items() if r.seen >= horizon}

    def issues(self) -> dict[str, str]:
        """Why this registry cannot be trusted right now (empty when fine)."""
        if self.kv is None:
            return {f"kv_{self.bucket}": self.last_error or "bucket not bound yet"}
        if not self.watching:
            return {f"kv_{self.bucket}": self.last_error or "watcher not running"}
        return {}

    async def _run(self) -> None:
        while True:
            try:
                js = self.js_getter()
                self.kv = await js.key_value(self.bucket)
                watcher = await self.kv.watchall()
                self.watching = True
                self.last_error = ""
                initial = True
                try:
                    async for entry in watcher:
                        if entry is None:  # end of the initial values
                            initial = False
                            continue
                        self._apply(entry, initial)
                finally:
                    self.watching = False
                    with contextlib.suppress(Exception):
                        await watcher.stop()
            except asyncio.CancelledError:
                raise
            except BucketNotFoundError:
                self.kv = None
                self.last_error = f"KV bucket {self.bucket!r} does not exist yet"
            except Exception as exc:  # reconnects are NATS' job; we just re-bind
                self.kv = None
                error = f"{type(exc).__name__}: {exc}"
                # Once per failure kind, not once a second for as long as an outage lasts.
                level = logging.DEBUG if error == self.last_error else logging.WARNING
                self.last_error = error
                log.log(
                    level,
                    "KV watch of %s failed: %s",
                    self.bucket,
                    error,
                    extra={"bucket": self.bucket, "error": error},
                )
            await asyncio.sleep(1.0)

    def _apply(self, entry: Any, initial: bool) -> None:
        key = str(entry.key)
        if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
            if self._entries.pop(key, None) is not None and self.on_change:
                self.on_change(key)
            return
        try:
            value = msgspec.json.decode(entry.value, type=self.type_)
        except msgspec.DecodeError as exc:
            self.bad_values += 1
            log.warning("bad value in KV %s key %s: %s", self.bucket, key, exc)
            return
        seen = time.monotonic()
        updated_ms = getattr(value, "updated_ms", 0)
        if initial and updated_ms:
            # Left over from before we started: it is only as fresh as its own timestamp says.
            seen -= max(0.0, time.time() - updated_ms / 1000)
        self._entries[key] = Registration(value=value, seen=seen)
        if self.on_change:
            self.on_change(key)

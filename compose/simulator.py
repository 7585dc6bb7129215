"""A virtual factory that writes to `ofa_assets` the way OpenFactory does.

It registers assets across workcenters (the bookkeeping records OpenFactory writes, among them
the `workcenter` UNS level), then streams samples, events and conditions at a given total rate,
mixing both producer families (OpenFactory's upper-case keys without headers, the MTConnect
producer's lower-case keys with `agent`/`instanceID`/`sequence` headers). Records are keyed by
asset uuid, so Kafka's default partitioner keeps each asset on one partition.

Every record carries ``attributes.seq``: a per-asset sequence number starting at 1, so that
tests can check completeness and order end to end.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from ofa_contract.layout import Layout
from ofa_contract.settings import (
    CommonSettings,
    NonEmptyStr,
    NonNegativeInt,
    NonNegativeSeconds,
    PositiveFloat,
    PositiveInt,
    env_var,
    from_env,
    settings_parser,
)

log = logging.getLogger("ofa_serving.simulator")

MTC_NS = "{urn:mtconnect.org:MTConnectStreams:2.2}"


def now_iso(micro: bool = False) -> str:
    """An ISO-8601 UTC timestamp with a `Z`, as both producer families write them."""
    ts = datetime.now(UTC)
    if micro:
        return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class Record(msgspec.Struct, frozen=True):
    """One record to produce: key, JSON value bytes and headers."""

    key: str
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


_enc = msgspec.json.Encoder()


def openfactory_record(asset: str, seq: int, item: str, value: Any, tag: str, type_: str) -> Record:
    """A record as OpenFactory's own producer writes it (upper-case keys, no headers)."""
    body = {
        "ID": item,
        "VALUE": value,
        "TAG": tag,
        "TYPE": type_,
        "attributes": {"timestamp": now_iso(), "seq": seq},
    }
    return Record(asset, _enc.encode(body))


def mtconnect_record(
    asset: str, seq: int, item: str, value: Any, tag: str, type_: str, mtc_seq: int
) -> Record:
    """A record as the MTConnect producer writes it (lower-case keys, agent headers)."""
    body = {
        "id": item,
        "tag": MTC_NS + tag,
        "type": type_,
        "attributes": {"timestamp": now_iso(micro=True), "seq": seq},
        "value": value,
    }
    headers = (
        ("agent", f"http://{asset.lower()}-agent:5000".encode()),
        ("instanceID", b"1757099626"),
        ("sequence", str(mtc_seq).encode()),
    )
    return Record(asset, _enc.encode(body), headers)


class Factory:
    """The assets of the virtual factory, their workcenters and per-asset sequence numbers."""

    def __init__(
        self,
        assets: int,
        workcenters: int,
        *,
        prefix: str = "SIM",
        group_attribute: str = "workcenter",
        helpers: bool = True,
        seed: int = 7,
    ) -> None:
        if assets < 1 or workcenters < 1:
            raise ValueError("need at least one asset and one workcenter")
        self.group_attribute = group_attribute
        self.assets = [f"{prefix}-ASSET-{i:03d}" for i in range(1, assets + 1)]
        self.workcenter_names = [f"WC{i}" for i in range(1, workcenters + 1)]
        self.workcenter = {
            a: self.workcenter_names[i % workcenters] for i, a in enumerate(self.assets)
        }
        self.helpers = [f"{a}-AGENT" for a in self.assets] if helpers else []
        self.seq: dict[str, int] = {}
        self._mtc_seq = 0
        self._rng = random.Random(seed)

    def _next(self, asset: str) -> int:
        n = self.seq.get(asset, 0) + 1
        self.seq[asset] = n
        return n

    def registration(self) -> Iterator[Record]:
        """The bookkeeping records OpenFactory writes when it deploys an asset."""
        for asset in self.assets:
            wc = self.workcenter[asset]
            yield openfactory_record(
                asset, self._next(asset), "AssetType", "Device", "AssetType", "OpenFactory"
            )
            yield openfactory_record(
                asset,
                self._next(asset),
                "uns_id",
                f"VirtualFactory/{wc}/{asset}",
                "UNSId",
                "OpenFactory",
            )
            yield openfactory_record(
                asset, self._next(asset), "inc", "VirtualFactory", "UNSLevel", "OpenFactory"
            )
            yield openfactory_record(
                asset, self._next(asset), self.group_attribute, wc, "UNSLevel", "OpenFactory"
            )
            yield openfactory_record(
                asset, self._next(asset), "asset", asset, "UNSLevel", "OpenFactory"
            )
            yield openfactory_record(
                asset, self._next(asset), "avail", "AVAILABLE", "Availability", "Events"
            )
        for helper in self.helpers:
            yield openfactory_record(
                helper, self._next(helper), "avail", "AVAILABLE", "Availability", "Events"
            )

    def move(self, asset: str, workcenter: str) -> Record:
        """The record that moves an asset to another workcenter."""
        self.workcenter[asset] = workcenter
        return openfactory_record(
            asset, self._next(asset), self.group_attribute, workcenter, "UNSLevel", "OpenFactory"
        )

    def event(self) -> Record:
        """One random sample, event or condition of a random asset, from either family."""
        rng = self._rng
        asset = rng.choice(self.assets)
        seq = self._next(asset)
        self._mtc_seq += 1
        kind = rng.randrange(5)
        if kind == 0:
            return mtconnect_record(
                asset,
                seq,
                "Temp",
                f"{rng.uniform(20, 120):.2f}",
                "Temperature",
                "Samples",
                self._mtc_seq,
            )
        if kind == 1:
            return openfactory_record(
                asset, seq, "Zact", round(rng.uniform(-50, 50), 3), "Position", "Samples"
            )
        if kind == 2:
            return mtconnect_record(
                asset,
                seq,
                "execution",
                rng.choice(["ACTIVE", "READY", "STOPPED"]),
                "Execution",
                "Events",
                self._mtc_seq,
            )
        if kind == 3:
            return mtconnect_record(
                asset, seq, "system", None, "Normal", "Condition", self._mtc_seq
            )
        return openfactory_record(
            asset, seq, "spindle_speed", rng.randint(0, 12000), "RotaryVelocity", "Samples"
        )


class FactoryShape(msgspec.Struct, kw_only=True, frozen=True):
    """The simulated factory's size and pace: read by `simulate` (``SIM_*``) and by `dev`
    (``DEV_*``), which hands its values to the simulator it starts (:meth:`simulator_env`)."""

    #: Simulated assets (machines).
    assets: PositiveInt = 20
    #: Workcenters the assets are spread over (the default grouping attribute's values).
    workcenters: PositiveInt = 3
    #: Total events per second.
    rate: PositiveFloat = 100.0

    def simulator_env(self) -> dict[str, str]:
        """The ``SIM_*`` variables that give `simulate` this shape."""
        return {
            env_var(SimulateSettings, f): str(getattr(self, f))
            for f in FactoryShape.__struct_fields__
        }


class SimulateSettings(FactoryShape, kw_only=True, frozen=True):
    """Options of `ofa-serving simulate` (also from SIM_* environment variables)."""

    env_prefix: ClassVar[str] = "SIM_"

    #: Seconds to stream; 0 = forever.
    duration: NonNegativeSeconds = 0.0
    #: Events to stream; 0 = no limit.
    count: NonNegativeInt = 0
    #: Asset uuids are ``<prefix>-ASSET-NNN``.
    prefix: NonEmptyStr = "SIM"
    #: The data item whose value is an asset's workcenter.
    group_attribute: NonEmptyStr = "workcenter"
    #: ``ASSET=WC``: move ASSET to workcenter WC during the run.
    move: str = ""
    #: Seconds after the start of streaming to move (-1: half the duration).
    move_at: float = -1.0
    #: Random seed (same seed, same factory).
    seed: int = 7
    #: Also write ``<UUID>-AGENT`` helper assets, as OpenFactory does.
    helpers: bool = True


async def simulate(
    factory: Factory,
    bootstrap: str,
    topic: str,
    *,
    rate: float,
    duration: float = 0.0,
    count: int = 0,
    move: tuple[str, str] | None = None,
    move_at: float = -1.0,
    stop: asyncio.Event | None = None,
) -> int:
    """Register the factory's assets, then stream events; return the number of records written.

    Stops after ``duration`` seconds or ``count`` streamed events (0 = no limit for either), or
    when ``stop`` is set. Every record is acknowledged by Kafka before this returns.
    """
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    written = 0
    pending: list[asyncio.Future[Any]] = []

    async def send(rec: Record) -> None:
        nonlocal written
        fut = await producer.send(topic, rec.value, key=rec.key.encode(), headers=list(rec.headers))
        pending.append(fut)
        written += 1
        if len(pending) >= 2000:
            await asyncio.gather(*pending)
            pending.clear()

    try:
        for rec in factory.registration():
            await send(rec)
        await asyncio.gather(*pending)
        pending.clear()
        log.info("registered assets", extra={"assets": len(factory.assets), "records": written})
        start = time.monotonic()
        streamed = 0
        moved = move is None
        if move is not None and move_at < 0:
            move_at = duration / 2 if duration > 0 else 0.0
        while True:
            elapsed = time.monotonic() - start
            if (duration and elapsed >= duration) or (count and streamed >= count):
                break
            if stop is not None and stop.is_set():
                break
            if not moved and move is not None and elapsed >= move_at:
                await send(factory.move(*move))
                moved = True
            due = int(elapsed * rate) + 1 - streamed
            if count:
                due = min(due, count - streamed)
            for _ in range(max(due, 0)):
                await send(factory.event())
                streamed += 1
            await asyncio.sleep(min(0.01, 1.0 / max(rate, 1.0)))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return written


def main(argv: list[str]) -> int:
    """`ofa-serving simulate`."""
    defaults = from_env(SimulateSettings)
    p = settings_parser("ofa-serving simulate", SimulateSettings, __doc__ or "")
    p.add_argument("--assets", type=int, default=defaults.assets)
    p.add_argument("--workcenters", type=int, default=defaults.workcenters)
    p.add_argument("--rate", type=float, default=defaults.rate, help="total events per second")
    p.add_argument("--duration", type=float, default=defaults.duration, help="seconds; 0 = forever")
    p.add_argument(
        "--count", type=int, default=defaults.count, help="events to stream; 0 = no limit"
    )
    p.add_argument("--prefix", default=defaults.prefix, help="asset uuid prefix")
    p.add_argument("--group-attribute", default=defaults.group_attribute)
    p.add_argument(
        "--move",
        default=defaults.move,
        metavar="ASSET=WC",
        help="move ASSET to workcenter WC during the run",
    )
    p.add_argument(
        "--move-at",
        type=float,
        default=defaults.move_at,
        help="seconds after the start of streaming (default: half the duration)",
    )
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--no-helpers", action="store_true", help="no <UUID>-AGENT helper assets")
    args = p.parse_args(argv)
    common = from_env(CommonSettings)
    layout = Layout.from_env()
    move = None
    if args.move:
        if "=" not in args.move:
            p.error("--move takes ASSET=WORKCENTER")
        asset, wc = args.move.split("=", 1)
        move = (asset, wc)
    factory = Factory(
        args.assets,
        args.workcenters,
        prefix=args.prefix,
        group_attribute=args.group_attribute,
        helpers=defaults.helpers and not args.no_helpers,
        seed=args.seed,
    )
    if move is not None and move[0] not in factory.assets:
        p.error(f"--move: unknown asset {move[0]!r} (assets are {factory.assets[0]}...)")

    async def run() -> int:
        from ofa_contract.runtime import install_stop_signals

        stop = asyncio.Event()
        install_stop_signals(stop)
        return await simulate(
            factory,
            common.kafka_bootstrap_servers,
            layout.input_topic,
            rate=args.rate,
            duration=args.duration,
            count=args.count,
            move=move,
            move_at=args.move_at,
            stop=stop,
        )

    written = asyncio.run(run())
    summary = {"records": written, "last_seq": factory.seq, "workcenter": factory.workcenter}
    sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    return 0

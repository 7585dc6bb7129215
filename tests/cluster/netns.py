"""Nodes as hosts: one network namespace per cluster node, joined by veth pairs to a bridge.

Each namespace gets an address of a private 10.x.y.0/24 chosen at random; this host has .1 on
the bridge, so the stack's processes (which stay on this host) reach every node directly, and
nodes reach each other through the bridge. A node is cut off from its peers by iptables DROP
rules inside its own namespace, and healed by flushing them; its processes keep running.
Nothing leaves the machine: the bridge has no uplink and no route is added.

Needs root and Debian's iproute2 and iptables (scripts/setup.sh installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator

from compose.local_cluster import NodeAddr

#: Every name this module creates starts with this, so that leftovers of a crashed run are
#: recognised and removed by the next one.
PREFIX = "ofalab"


class NetnsError(RuntimeError):
    """A namespace, link or rule could not be set up; the message has the failing command."""


def _run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def available() -> str | None:
    """Why namespaces cannot be used here (None when they can)."""
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: run scripts/setup.sh as root (installs iproute2/iptables)"
    probe = f"{PREFIX}probe{uuid.uuid4().hex[:4]}"
    try:
        _run("ip", "netns", "add", probe)
    except NetnsError as exc:
        return f"cannot create a network namespace (root needed): {exc}"
    _run("ip", "netns", "del", probe)
    return None


def sweep_leftovers() -> list[str]:
    """Delete namespaces and bridges of earlier runs that no process uses any more."""
    removed = []
    for line in _run("ip", "netns", "list").splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX) and not _run("ip", "netns", "pids", name).strip():
            _run("ip", "netns", "del", name)
            removed.append(name)
    for line in _run("ip", "-o", "link", "show", "type", "bridge").splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX) and name not in _bridges_in_use():
            with contextlib.suppress(NetnsError):
                _run("ip", "link", "del", name)
                removed.append(name)
    return removed


def _bridges_in_use() -> set[str]:
    """Bridges that still have a port (a veth of a live namespace)."""
    used = set()
    for line in _run("ip", "-o", "link", "show").splitlines():
        if " master " in line:
            used.add(line.split(" master ")[1].split()[0])
    return used


class NetLab:
    """``count`` namespaces, each a host with one address, and the bridge between them."""

    def __init__(self, count: int = 3) -> None:
        tag = uuid.uuid4().hex[:5]
        self.bridge = f"{PREFIX}{tag}"  # 11 characters: interface names hold at most 15
        self.subnet = f"10.{random.randrange(200, 250)}.{random.randrange(1, 250)}"
        self.host_ip = f"{self.subnet}.1"
        self.names = [f"{PREFIX}{tag}n{i + 1}" for i in range(count)]
        self.ips = [f"{self.subnet}.{10 + i}" for i in range(count)]
        self._veths = [f"{PREFIX}{tag}v{i + 1}" for i in range(count)]
        #: Isolated nodes and the ports their isolation covers (empty = all traffic).
        self.isolated: dict[int, tuple[int, ...]] = {}

    def create(self) -> None:
        """Bridge, namespaces, veth pairs and addresses; undone by :meth:`destroy`."""
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.host_ip}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for ns, veth, ip in zip(self.names, self._veths, self.ips, strict=True):
            _run("ip", "netns", "add", ns)
            _run("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            _run("ip", "link", "set", f"{veth}p", "netns", ns)
            _run("ip", "-n", ns, "link", "set", f"{veth}p", "name", "eth0")
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            _run("ip", "-n", ns, "link", "set", "eth0", "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "set", veth, "master", self.bridge)
            _run("ip", "link", "set", veth, "up")

    def destroy(self) -> None:
        """Remove everything :meth:`create` made (the veths go with their namespaces)."""
        errors = []
        # Deleting a namespace frees its veths asynchronously (kernel cleanup work); deleting
        # each pair from this side is immediate.
        for veth in self._veths:
            try:
                _run("ip", "link", "del", veth)
            except NetnsError as exc:
                if "Cannot find device" not in str(exc):
                    errors.append(str(exc))
        for ns in self.names:
            try:
                _run("ip", "netns", "del", ns)
            except NetnsError as exc:
                if "No such file" not in str(exc):
                    errors.append(str(exc))
        try:
            _run("ip", "link", "del", self.bridge)
        except NetnsError as exc:
            if "Cannot find device" not in str(exc):
                errors.append(str(exc))
        if errors:
            raise NetnsError("; ".join(errors))

    def nodes(self, ports: dict[str, int] | None = None) -> list[NodeAddr]:
        """One cluster node per namespace; every node can use the same ports (own address)."""
        p = ports or {"kafka": 9092, "controller": 9093, "nats": 4222, "route": 6222, "mon": 8222}
        return [
            NodeAddr(
                name=f"n{i + 1}",
                host=ip,
                kafka_port=p["kafka"],
                controller_port=p["controller"],
                nats_port=p["nats"],
                route_port=p["route"],
                monitor_port=p["mon"],
                netns=ns,
            )
            for i, (ns, ip) in enumerate(zip(self.names, self.ips, strict=True))
        ]

    def _rules(self, i: int, action: str, ports: tuple[int, ...]) -> list[list[str]]:
        cmds = []
        for j, peer in enumerate(self.ips):
            if j == i:
                continue
            if not ports:
                cmds.append(["INPUT", "-s", peer])
                cmds.append(["OUTPUT", "-d", peer])
            for port in ports:
                # Both ends of every connection on that port: the node's listener and its own
                # connections to the peers' listener (all nodes use the same ports).
                for flag in ("--dport", "--sport"):
                    cmds.append(["INPUT", "-s", peer, "-p", "tcp", flag, str(port)])
                    cmds.append(["OUTPUT", "-d", peer, "-p", "tcp", flag, str(port)])
        ns = self.names[i]
        return [["ip", "netns", "exec", ns, "iptables", action, *c, "-j", "DROP"] for c in cmds]

    async def isolate(self, i: int, ports: tuple[int, ...] = ()) -> None:
        """Drop every packet between node ``i`` and the other nodes, or only those of
        connections on ``ports`` (to cut off its broker but not its nats-server); this host's
        clients still reach it."""
        for cmd in self._rules(i, "-I", ports):
            await _arun(cmd)
        self.isolated[i] = ports

    async def heal(self, i: int) -> None:
        """Remove the rules :meth:`isolate` added."""
        for cmd in self._rules(i, "-D", self.isolated.pop(i)):
            await _arun(cmd)

    async def drop_rules(self, i: int) -> int:
        """How many DROP rules node ``i``'s namespace holds (for the tests of this module)."""
        out = await _arun(["ip", "netns", "exec", self.names[i], "iptables", "-S"])
        return sum(1 for line in out.splitlines() if line.endswith("-j DROP"))


async def _arun(cmd: list[str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)}: {err.decode().strip()}")
    return out.decode()


@contextlib.contextmanager
def netlab(count: int = 3) -> Iterator[NetLab]:
    """A :class:`NetLab`, destroyed at exit whatever happened inside."""
    sweep_leftovers()
    lab = NetLab(count)
    try:
        lab.create()
        yield lab
    finally:
        lab.destroy()

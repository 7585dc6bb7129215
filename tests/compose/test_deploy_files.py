"""Docker Compose / Swarm files validated without Docker: schema shape and cross-references
(env names exist in each process' settings and convert, ports, images, depends_on, nginx)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from compose import envdoc
from ofa_contract.processes import PROCESSES
from ofa_contract.settings import CommonSettings, from_env

COMPOSE = Path(__file__).resolve().parents[2] / "compose"
OFA_COMMANDS = {p.command for p in PROCESSES}
#: command -> (settings field holding the HTTP port, field holding the listen host)
PORT_FIELDS = {
    "split": ("ops_port", "ops_host"),
    "bridge": ("ops_port", "ops_host"),
    "edge": ("port", "host"),
    "router": ("port", "host"),
}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((COMPOSE / name).read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict), name
    return doc


def ofa_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in doc["services"].items()
        if "ofa-serving" in str(svc.get("image", ""))
    }


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {str(k): str(v) for k, v in env.items()}


@pytest.mark.parametrize("name", ["docker-compose.yml", "swarm-stack.yml"])
def test_env_names_exist_and_convert(name: str) -> None:
    doc = load(name)
    services = ofa_services(doc)
    assert {svc["command"][0] for svc in services.values()} >= {"split", "bridge", "edge", "router"}
    for sname, svc in services.items():
        command = svc["command"][0]
        assert command in OFA_COMMANDS, f"{sname}: unknown command {command!r}"
        env = env_of(svc)
        unknown = set(env) - envdoc.allowed_env(command)
        assert not unknown, f"{name}:{sname} sets variables its process never reads: {unknown}"
        # The values must also pass the process' own validation (types, choices).
        cls, prefix = envdoc.settings_struct(command)
        from_env(cls, prefix, environ=env)
        from_env(CommonSettings, environ=env)
        if command in PORT_FIELDS:
            port_field, host_field = PORT_FIELDS[command]
            settings = from_env(cls, prefix, environ=env)
            assert getattr(settings, host_field) == "0.0.0.0", f"{sname} listens on loopback only"
            port = getattr(settings, port_field)
            check = " ".join(svc["healthcheck"]["test"])
            assert f":{port}/health" in check, f"{sname}: healthcheck on the wrong port"
            # The router also publishes OpenFactory's asset-router port when it serves one.
            served = {str(port), str(getattr(settings, "asset_router_port", 0))}
            for mapping in svc.get("ports", []):
                assert str(mapping).split(":")[-1] in served, f"{sname}: port mapping {mapping}"
        assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092"
        assert env.get("NATS_URL") == "nats://nats:4222"


@pytest.mark.parametrize("name", ["docker-compose.yml", "swarm-stack.yml"])
def test_images_and_infrastructure(name: str) -> None:
    doc = load(name)
    images = {svc.get("image") for svc in ofa_services(doc).values()}
    assert len(images) == 1, f"all ofa-serving processes share one image: {images}"
    kafka = doc["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    kenv = env_of(kafka)
    assert "broker" in kenv["KAFKA_PROCESS_ROLES"] and "controller" in kenv["KAFKA_PROCESS_ROLES"]
    assert kenv["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    voters = kenv["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    assert voters.split("@")[1].split(":")[1] in kenv["KAFKA_LISTENERS"]
    nats = doc["services"]["nats"]
    assert nats["image"].startswith("nats:") and "-js" in nats["command"]
    assert doc["services"]["kafka-init"]["command"][-3] == "ofa_assets"
    for svc in doc["services"].values():
        if svc.get("image", "").startswith(("apache/kafka", "nats:", "nginx:")) is False:
            continue
        assert ":" in svc["image"] and not svc["image"].endswith(":latest"), "pin third-party"


def test_compose_cross_references() -> None:
    doc = load("docker-compose.yml")
    services = doc["services"]
    for name, svc in services.items():
        for target in svc.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["bridge"]["deploy"]["replicas"] >= 2
    assert services["edge"]["deploy"]["replicas"] >= 2
    # Every ofa-serving service builds from the one Dockerfile.
    for svc in ofa_services(doc).values():
        assert svc["build"]["dockerfile"] == "compose/Dockerfile"
    # Volumes used are declared.
    declared = set(doc.get("volumes", {}))
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if not src.startswith("."):
                assert src in declared
            else:
                assert (COMPOSE / src).exists(), f"mounted file {src} missing"
    # Redirects (ROUTER_MODE=redirect) go through nginx's published port.
    nginx_port = services["nginx"]["ports"][0].split(":")[0]
    assert env_of(services["router"])["ROUTER_REDIRECT_BASE"].endswith(f":{nginx_port}")


@pytest.mark.parametrize(
    "name",
    [
        "docker-compose.yml",
        "swarm-stack.yml",
        "docker-compose.cluster.yml",
        "swarm-stack.cluster.yml",
    ],
)
def test_router_proxies_and_serves_openfactory_clients(name: str) -> None:
    services = load(name)["services"]
    router_env = env_of(services["router"])
    router = from_env(*envdoc.settings_struct("router"), environ=router_env)
    # The default (proxy) mode: the router reaches the edges at the URL they register, which
    # must be an address inside the stack (nginx's container port), not a public one.
    assert router.mode == "proxy"
    edge_url = env_of(services["edge"])["EDGE_PUBLIC_URL"]
    nginx_conf = (COMPOSE / "nginx.conf").read_text()
    listen = re.search(r"^\s*listen\s+(\d+);", nginx_conf, re.M)
    assert listen is not None and edge_url == f"http://nginx:{listen.group(1)}"
    # OpenFactory's clients: the asset router on 8002, published, answering a NATS URL that
    # reaches the published NATS port from outside (not the in-stack NATS_URL).
    assert router.asset_router_port == 8002
    assert "8002:8002" in services["router"]["ports"]
    nats = services["nats-1" if "cluster" in name else "nats"]
    assert "4222:4222" in nats["ports"]
    nats_url = router_env["ROUTER_ASSET_NATS_URL"]
    assert nats_url.startswith("nats://") and nats_url.endswith(":4222")
    assert nats_url != router_env["NATS_URL"]


def test_swarm_stack() -> None:
    doc = load("swarm-stack.yml")
    services = doc["services"]
    for name, svc in services.items():
        assert "depends_on" not in svc, f"{name}: swarm ignores depends_on"
        deploy = svc["deploy"]
        assert "restart_policy" in deploy, name
        assert deploy.get("replicas", 1) >= 1
        assert svc.get("networks") == ["ofa"], name
    for name, svc in ofa_services(doc).items():
        assert "healthcheck" in svc, name
    assert services["bridge"]["deploy"]["replicas"] >= 2
    assert services["edge"]["deploy"]["replicas"] >= 2
    assert services["router"]["deploy"]["replicas"] >= 2
    assert doc["networks"]["ofa"]["driver"] == "overlay"
    for conf in doc["configs"].values():
        assert (COMPOSE / conf["file"]).exists()


def test_nginx_is_sse_safe() -> None:
    conf = (COMPOSE / "nginx.conf").read_text()
    directives = {
        m.group(1): m.group(2).strip() for m in re.finditer(r"^\s*([a-z_]+)\s+([^;]*);", conf, re.M)
    }
    assert directives["proxy_buffering"] == "off"
    assert directives["proxy_http_version"] == "1.1"
    assert int(directives["proxy_read_timeout"].rstrip("s")) >= 60
    assert directives["proxy_set_header"]  # headers are forwarded
    edge_env = env_of(load("docker-compose.yml")["services"]["edge"])
    assert f"edge:{edge_env['EDGE_PORT']}" in conf


def test_dockerfile() -> None:
    text = (COMPOSE / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["ofa-serving"]' in text
    assert re.search(r"^FROM python:3\.11", text, re.M)
    exposed = set(re.search(r"^EXPOSE (.*)$", text, re.M).group(1).split())  # type: ignore[union-attr]
    assert {"5555", "8100"} <= exposed
    for pkg in ("ofa_contract", "router", "bridge", "edge", "compose"):
        assert f"COPY {pkg} ./{pkg}" in text


def test_environment_table_is_current() -> None:
    assert (COMPOSE / "ENVIRONMENT.md").read_text() == envdoc.render(), (
        "compose/ENVIRONMENT.md is stale: run `python -m compose.envdoc > compose/ENVIRONMENT.md`"
    )


# ---------------------------------------------------------------- cluster deployment files

CLUSTER_FILES = ["docker-compose.cluster.yml", "swarm-stack.cluster.yml"]
NODES = (1, 2, 3)


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_env_names_exist_and_point_at_the_cluster(name: str) -> None:
    doc = load(name)
    services = ofa_services(doc)
    assert {svc["command"][0] for svc in services.values()} >= {"split", "bridge", "edge", "router"}
    for sname, svc in services.items():
        command = svc["command"][0]
        env = env_of(svc)
        unknown = set(env) - envdoc.allowed_env(command)
        assert not unknown, f"{name}:{sname} sets variables its process never reads: {unknown}"
        cls, prefix = envdoc.settings_struct(command)
        from_env(cls, prefix, environ=env)
        common = from_env(CommonSettings, environ=env)
        brokers = common.kafka_bootstrap_servers.split(",")
        assert brokers == [f"kafka-{i}:9092" for i in NODES], f"{sname}: {brokers}"
        hosts = [u.removeprefix("nats://").split(":")[0] for u in common.nats_url.split(",")]
        assert hosts == [f"nats-{i}" for i in NODES], f"{sname}: NATS_URL {hosts}"
    split_cls, split_prefix = envdoc.settings_struct("split")
    bridge_cls, bridge_prefix = envdoc.settings_struct("bridge")
    edge_cls, edge_prefix = envdoc.settings_struct("edge")
    split = from_env(split_cls, split_prefix, environ=env_of(services["splitter"]))
    bridge = from_env(bridge_cls, bridge_prefix, environ=env_of(services["bridge"]))
    edge = from_env(edge_cls, edge_prefix, environ=env_of(services["edge"]))
    assert getattr(split, "topic_replication") == 3  # noqa: B009 - the type is dynamic here
    assert getattr(bridge, "replicas") == 3  # noqa: B009
    assert getattr(edge, "registry_replicas") == 3  # noqa: B009


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_kafka_quorum_and_replication(name: str) -> None:
    doc = load(name)
    envs = [env_of(doc["services"][f"kafka-{i}"]) for i in NODES]
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert voters == {",".join(f"{i}@kafka-{i}:9093" for i in NODES)}
    assert len({e["CLUSTER_ID"] for e in envs}) == 1 and len(envs[0]["CLUSTER_ID"]) == 22
    for i, e in zip(NODES, envs, strict=True):
        assert doc["services"][f"kafka-{i}"]["image"].startswith("apache/kafka:")
        assert e["KAFKA_NODE_ID"] == str(i)
        assert e["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://kafka-{i}:9092"
        assert {"broker", "controller"} <= set(e["KAFKA_PROCESS_ROLES"].split(","))
        assert "CONTROLLER://:9093" in e["KAFKA_LISTENERS"]
        assert e["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "3"
        assert e["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "2"
        assert e["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false"
    init = doc["services"]["kafka-init"]["command"]
    assert init[init.index("--replication-factor") + 1] == "3"
    assert init[init.index("--topic") + 1] == "ofa_assets"
    volumes = {v.split(":")[0] for i in NODES for v in doc["services"][f"kafka-{i}"]["volumes"]}
    assert len(volumes) == 3 and volumes <= set(doc["volumes"]), "one data volume per broker"


def _nats_conf() -> str:
    return (COMPOSE / "nats-cluster.conf").read_text()


@pytest.mark.parametrize("name", CLUSTER_FILES)
def test_cluster_nats_routes_and_jetstream(name: str) -> None:
    doc = load(name)
    conf = _nats_conf()
    routes = re.findall(r"nats-route://([\w-]+):(\d+)", conf)
    assert sorted(routes) == [(f"nats-{i}", "6222") for i in NODES]
    assert re.search(r"listen:\s*0\.0\.0\.0:6222", conf)
    assert re.search(r"^server_name:\s*\$NATS_SERVER_NAME\s*$", conf, re.M)
    assert re.search(r"jetstream\s*\{[^}]*store_dir:\s*/data", conf)
    assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.M)
    assert re.search(r"^max_payload:\s*2MB", conf, re.M)
    data = set()
    for i in NODES:
        svc = doc["services"][f"nats-{i}"]
        assert svc["image"].startswith("nats:") and svc["command"] == [
            "-c",
            "/etc/nats/nats-cluster.conf",
        ]
        assert env_of(svc)["NATS_SERVER_NAME"] == f"nats-{i}"
        data |= {v.split(":")[0] for v in svc["volumes"] if v.endswith(":/data")}
        if name.startswith("swarm"):
            assert svc["configs"][0]["source"] == "nats_conf"
            assert svc["configs"][0]["target"] == "/etc/nats/nats-cluster.conf"
        else:
            assert "./nats-cluster.conf:/etc/nats/nats-cluster.conf:ro" in svc["volumes"]
    assert len(data) == 3 and data <= set(doc["volumes"]), "one JetStream store per node"


def test_cluster_compose_cross_references() -> None:
    doc = load("docker-compose.cluster.yml")
    services = doc["services"]
    for name, svc in services.items():
        for target in svc.get("depends_on", {}):
            assert target in services, f"{name} depends on unknown service {target}"
    assert set(services["kafka-init"]["depends_on"]) == {f"kafka-{i}" for i in NODES}
    for svc in ofa_services(doc).values():
        assert svc["build"]["dockerfile"] == "compose/Dockerfile"
    assert services["bridge"]["deploy"]["replicas"] >= 2
    assert services["edge"]["deploy"]["replicas"] >= 2


def test_cluster_swarm_spreads_nodes_over_hosts() -> None:
    doc = load("swarm-stack.cluster.yml")
    services = doc["services"]
    for name, svc in services.items():
        assert "depends_on" not in svc, f"{name}: swarm ignores depends_on"
        assert "restart_policy" in svc["deploy"], name
        assert svc.get("networks") == ["ofa"], name
    for kind in ("kafka", "nats"):
        for i in NODES:
            constraints = services[f"{kind}-{i}"]["deploy"]["placement"]["constraints"]
            assert constraints == [f"node.labels.ofa.node == {i}"], f"{kind}-{i}"
    for conf in doc["configs"].values():
        assert (COMPOSE / conf["file"]).exists()
    assert doc["networks"]["ofa"]["driver"] == "overlay"

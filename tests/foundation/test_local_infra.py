"""`infra up|down|status`: real servers start, a second `up` reuses them, `down` stops them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec

from compose import local_infra


def _env(cfg: local_infra.InfraConfig) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "NATS_URL")}
    env.update(
        OFA_WORK_DIR=cfg.work_dir,
        OFA_KAFKA_PORT=str(cfg.kafka_port),
        OFA_KAFKA_CONTROLLER_PORT=str(cfg.kafka_controller_port),
        OFA_NATS_PORT=str(cfg.nats_port),
        OFA_NATS_MONITOR_PORT=str(cfg.nats_monitor_port),
        LOG_FORMAT="text",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "compose.cli", "infra", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_reuse_status_down(tmp_path: Path) -> None:
    cfg = local_infra.private_config(tmp_path)
    env = _env(cfg)
    try:
        first = _cli(env, "up")
        assert first.returncode == 0, first.stderr
        assert f"127.0.0.1:{cfg.kafka_port}" in first.stdout
        state = local_infra.read_state(cfg)
        assert local_infra.pid_alive(state.kafka_pid) and local_infra.pid_alive(state.nats_pid)

        second = _cli(env, "up")
        assert second.returncode == 0, second.stderr
        assert "reusing running Kafka" in second.stderr
        assert local_infra.read_state(cfg).kafka_pid == state.kafka_pid

        status = _cli(env, "status")
        assert status.returncode == 0
        doc = msgspec.json.decode(status.stdout)
        assert doc["kafka"]["running"] and doc["nats"]["running"]
    finally:
        down = _cli(env, "down")
    assert down.returncode == 0, down.stderr
    assert not local_infra.pid_alive(state.kafka_pid)
    assert not local_infra.pid_alive(state.nats_pid)
    assert not local_infra.port_open(cfg.kafka_port)
    after = _cli(env, "status")
    assert after.returncode == 3
    assert msgspec.json.decode(after.stdout)["kafka"]["running"] is False


def test_taken_port_gives_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        cfg = local_infra.InfraConfig(
            work_dir=str(tmp_path), kafka_port=s.getsockname()[1], nats_port=local_infra.free_port()
        )
        out = _cli(_env(cfg), "up")
    assert out.returncode == 1
    assert "is taken by another process" in out.stderr

#!/usr/bin/env bash
# Installs everything the stack and the tests need, idempotently:
#   - a virtualenv in .venv with ofa-serving and its dev/test extras (PyPI),
#   - the Apache Kafka jars (Maven Central, cached in ~/.cache/ofa-serving),
#   - Debian's chromium for the browser tests (only when missing and apt-get can run as root),
#   - Debian's iproute2 and iptables for the cluster fault tests, which run each node in a
#     network namespace and cut it off with iptables (only when missing, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.13 python3.12 python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PY=$c; break
    fi
  done
fi
[ -n "$PY" ] || { echo "error: Python 3.11+ is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.ofa-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch "$stamp"
fi

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  for tool in java mvn; do
    command -v "$tool" >/dev/null 2>&1 || {
      echo "error: '$tool' not found: the local Kafka needs a JDK 17+ and Maven" \
           "(or set KAFKA_BOOTSTRAP_SERVERS and NATS_URL to use existing servers)" >&2; exit 1; }
  done
  .venv/bin/python -c 'from compose.local_infra import InfraConfig, ensure_kafka_jars; print("kafka jars:", ensure_kafka_jars(InfraConfig()))'
fi

if [ "${OFA_SKIP_BROWSER:-0}" != 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: chromium not found; the browser tests will fail (install Debian's chromium)" >&2
  fi
fi

missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's ${missing[*]} for the cluster fault tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} not found; the cluster fault tests (tests/cluster) will fail" >&2
  fi
fi

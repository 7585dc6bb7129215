#!/usr/bin/env bash
# The test command (README, .ci/run): set up, lint, type-check, then the test suite against real
# Kafka and NATS started by the tests themselves (or KAFKA_BOOTSTRAP_SERVERS/NATS_URL if set).
# Extra arguments go to pytest, e.g. `scripts/test.sh tests/foundation -x` or `--run-slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== ruff"; .venv/bin/ruff format --check . && .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"; exec .venv/bin/pytest -q -ra -p no:cacheprovider "$@"

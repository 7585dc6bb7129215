#!/usr/bin/env bash
# The main command (README): set up, then run the whole stack locally with a simulated factory.
# Extra arguments go to `ofa-serving dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
OFA_SKIP_BROWSER=1 scripts/setup.sh
exec .venv/bin/ofa-serving dev "$@"

#!/usr/bin/env bash
# The test command: set up, then lint (ruff), type-check (mypy --strict) and
# run every test, including the ones against the real Asterisk 22 test bed.
# Extra arguments go to pytest (e.g. scripts/test.sh -k routing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check pbxbridge tests benchmarks
echo "== mypy --strict"; mypy
echo "== pytest"; pytest "$@"

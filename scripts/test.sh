#!/usr/bin/env bash
# The test command: set up, then lint (ruff), type-check (mypy --strict) and
# run every test, including the ones against the real Asterisk 22 test bed.
# Extra arguments go to pytest (e.g. scripts/test.sh -k routing).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff"; ruff check pbxbridge tests benchmarks
echo "== ruff format"; ruff format --check pbxbridge tests benchmarks
echo "== mypy --strict"; mypy
echo "== import contracts"; lint-imports --no-cache
case "${PBXBRIDGE_SKIP_ASTERISK:-}" in
  1|yes|true|on|YES|TRUE|ON) ;;
  *)
    # Built (or checked) here, not inside the first Asterisk test: on a new
    # machine debootstrap takes minutes, which pytest's per-test timeout
    # (pyproject.toml) is not meant to cover.
    echo "== Asterisk test bed"; python -m tests.testbed ensure ;;
esac
echo "== pytest"; pytest "$@"

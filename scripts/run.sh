#!/usr/bin/env bash
# The main job on a fresh machine: set up, start the real Asterisk 22 test bed
# (Debian sid chroot, built on first use; needs root), start agent phones
# (sipp) and run the daemon in the foreground with the example rules.
# Ctrl-C stops the daemon; `.venv/bin/python -m tests.testbed down` stops Asterisk.
# Screen pops go to the local mosquitto (127.0.0.1:1883): `pbxbridge watch`.
#
# Then, in another shell, place a call to Wardenburg's number:
#   .venv/bin/python -m tests.testbed call --did 044077300 --caller 04407123456
# and watch the daemon's log line "call.routed" and `curl -s 127.0.0.1:8090/healthz`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
info=$(python -m tests.testbed up)
export PBXBRIDGE_ARI_URL=$(printf "%s" "$info" | python -c "import json,sys; print(json.load(sys.stdin)['ari_url'].removesuffix('/ari'))")
export PBXBRIDGE_ARI_USER=$(printf '%s' "$info" | python -c 'import json,sys; print(json.load(sys.stdin)["ari_user"])')
export PBXBRIDGE_ARI_PASSWORD=$(printf '%s' "$info" | python -c 'import json,sys; print(json.load(sys.stdin)["ari_password"])')
export PBXBRIDGE_AMI_USER=$(printf "%s" "$info" | python -c "import json,sys; print(json.load(sys.stdin)['ami_user'])")
export PBXBRIDGE_AMI_PASSWORD=$(printf "%s" "$info" | python -c "import json,sys; print(json.load(sys.stdin)['ami_password'])")
export PBXBRIDGE_LOG_FORMAT=${PBXBRIDGE_LOG_FORMAT:-console}
export STATE_DIRECTORY=${STATE_DIRECTORY:-$PWD/var}
python -m tests.testbed agents &
agents=$!
trap 'kill $agents 2>/dev/null || true' EXIT
pbxbridge check config/routing.yaml
pbxbridge run --config config/routing.yaml

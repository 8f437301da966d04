#!/usr/bin/env bash
# The main job on a fresh machine: set up, start the real Asterisk 22 test bed
# (Debian sid chroot, built on first use; needs root), start agent phones
# (sipp) and run the daemon in the foreground with the example rules.
# Ctrl-C stops the daemon; `.venv/bin/python -m tests.testbed down` stops Asterisk.
# Screen pops go to the local mosquitto (127.0.0.1:1883): `pbxbridge watch`.
#
# The agent page: demo logins for the test bed's agent phones (agent1..agent4)
# are written to $STATE_DIRECTORY/agents.yaml with fresh random passwords on
# every run (hashed with `pbxbridge agent-password`), printed below with the
# URL to open. PBXBRIDGE_AGENTS_FILE set beforehand is used as it is.
#
# Then, in another shell, place a call to Wardenburg's number:
#   .venv/bin/python -m tests.testbed call --did 044077300 --caller 04407123456
# and watch it pop on agent1's page, the daemon's log line "call.routed" and
# `curl -s 127.0.0.1:8090/healthz`. The supervisor page is at
# http://127.0.0.1:8090/supervisor/ (sign in with the demo supervisor login
# printed below).
#
# Virtual hold ("Rückruf statt Warten", docs/virtual-hold.md): stop this daemon
# (Ctrl-C), then
#   .venv/bin/python -m tests.testbed vhold-demo
# places a call that presses 1 in the queue, confirms its number, and is called
# back when an agent frees up (it runs its own daemon; about 30 s).
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

# -- demo logins (tests/unit/test_web_hardening.py runs this block alone) --
mkdir -p "$STATE_DIRECTORY"
DEMO_AGENTS="agent1 agent2 agent3 agent4"  # the PJSIP endpoints of tests/testbed/config.py

# One "agent: hash" line per demo agent to fd 3; the passwords to stdout only.
demo_agent_logins() {
    local agent password
    for agent in $DEMO_AGENTS; do
        password=$(python -c 'import secrets; print(secrets.token_urlsafe(12))')
        printf '%s\n' "$password" | pbxbridge agent-password --stdin --agent "$agent" >&3
        printf '  %-12s %s\n' "$agent" "$password"
    done
}

# The supervisor page (/supervisor/, docs/supervisor.md): one demo login with
# "supervisor: true" in the agents file, password to stdout only.
demo_supervisor_logins() {
    local password hashed
    password=$(python -c 'import secrets; print(secrets.token_urlsafe(12))')
    hashed=$(printf '%s\n' "$password" | pbxbridge agent-password --stdin)
    printf 'leitung:\n  password: %s\n  name: Schichtleitung (Demo)\n  supervisor: true\n' \
        "$hashed" >&3
    printf '  %-12s %s   supervisor page: http://%s/supervisor/\n' leitung "$password" \
        "$http_bind"
}

http_bind=${PBXBRIDGE_HTTP_BIND:-127.0.0.1:8090}
if [ -z "${PBXBRIDGE_AGENTS_FILE:-}" ]; then
    export PBXBRIDGE_AGENTS_FILE="$STATE_DIRECTORY/agents.yaml"
    umask_before=$(umask)
    umask 077  # hashes only, but private all the same
    logins=$( { demo_agent_logins; demo_supervisor_logins; } 3>"$PBXBRIDGE_AGENTS_FILE.new")
    mv "$PBXBRIDGE_AGENTS_FILE.new" "$PBXBRIDGE_AGENTS_FILE"
    umask "$umask_before"
    printf '\nAgent page: http://%s/agent/\n' "$http_bind"
    printf 'Demo logins (new passwords on every run; agents file %s):\n%s\n\n' \
        "$PBXBRIDGE_AGENTS_FILE" "$logins"
else
    printf '\nAgent page: http://%s/agent/ (agents file %s)\n\n' "$http_bind" \
        "$PBXBRIDGE_AGENTS_FILE"
fi
# -- end demo logins --
python -m tests.testbed agents &
agents=$!
trap 'kill $agents 2>/dev/null || true' EXIT
pbxbridge check config/routing.yaml
pbxbridge run --config config/routing.yaml

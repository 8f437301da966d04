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
# Then, in another shell (this script prints what to type: the same PATH and
# state directory as the daemon, so `pbxbridge override ...` reaches it), place
# a call to Wardenburg's number:
#   .venv/bin/python -m tests.testbed call --did 044077300 --caller 04407123456
# and watch it pop on agent1's page, the daemon's log line "call.routed" and
# `curl -s 127.0.0.1:8090/healthz`. Wardenburg is open Mon-Fri 07:00-18:00
# (Europe/Berlin); at other times the call takes its closed handling and pops
# nowhere: the script says so and prints the override that opens it for an
# hour. The supervisor page is at http://127.0.0.1:8090/supervisor/ (sign in
# with the demo supervisor login printed below).
#
# The test bed is one per machine: this script holds its lock
# (/tmp/pbxbridge-testbed.lock) until it ends, waiting first while a test
# session or benchmark holds it; a test session started meanwhile waits for it.
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

# -- test bed lock (tests/unit/test_testbed_cli.py runs this block alone) --
# Held on fd 9 until this script and what it started (daemon, agent phones)
# end: without it a test session or benchmark restarts Asterisk under the
# daemon, and the daemon's Stasis app takes their calls. `up` is told which
# descriptor holds it (opening the file again would collide with it).
testbed_lock=${PBXBRIDGE_TESTBED_LOCK:-/tmp/pbxbridge-testbed.lock}
exec 9>>"$testbed_lock"
if ! flock -n 9; then
    printf 'run.sh: waiting for the test bed lock %s (a test session or benchmark is using Asterisk)\n' \
        "$testbed_lock" >&2
    flock 9
fi
export PBXBRIDGE_TESTBED_LOCK_FD=9
# -- end test bed lock --
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

# -- next steps (tests/unit/test_testbed_cli.py runs this block alone) --
# What to type in another shell. STATE_DIRECTORY must be the daemon's: a plain
# shell's `pbxbridge override set -c config/routing.yaml` writes beside the
# rules (a "var" folder beside config/routing.yaml) and the daemon never sees it.
demo_call="python -m tests.testbed call --did 044077300 --caller 04407123456"
printf 'In another shell:\n  cd %q && export PATH="$PWD/.venv/bin:$PATH" STATE_DIRECTORY=%q\n' \
    "$PWD" "$STATE_DIRECTORY"
printf '  %s\n  pbxbridge watch --count 2\n  curl -s %s/healthz\n' "$demo_call" "$http_bind"
# The call reaches agent1 only while Wardenburg is open; outside its hours it
# ends in the closed handling, with no pop, and `call` still says successful=1.
demo_action=$(pbxbridge explain -c config/routing.yaml --did 044077300 --caller 04407123456 --json |
    python -c 'import json,sys; print(json.load(sys.stdin)["action"])')
if [ "$demo_action" != queue ]; then
    printf '  Wardenburg is not open now (the call would be "%s", no pop); open it for an hour first:\n' \
        "$demo_action"
    printf '  pbxbridge override set -c config/routing.yaml --tenant wardenburg --open --reason Demo --for 1h\n'
fi
printf '\n'
# -- end next steps --
python -m tests.testbed agents &
agents=$!
trap 'kill $agents 2>/dev/null || true' EXIT
pbxbridge check config/routing.yaml
pbxbridge run --config config/routing.yaml

"""``pbxbridge run``, ``watch`` and ``agent-password``: the daemon and what sits beside it."""

from __future__ import annotations

import contextlib
import json
import os
import sys

import click

from pbxbridge.cli import base
from pbxbridge.cli.base import CONFIG_ENV, cli


@cli.command()
@click.option(
    "-c",
    "--config",
    required=True,
    envvar=CONFIG_ENV,
    type=click.Path(dir_okay=False),
    help="The routing rules file.",
)
@click.option("--ari-url", envvar="PBXBRIDGE_ARI_URL", help="Asterisk HTTP base URL.")
@click.option(
    "--http-bind", envvar="PBXBRIDGE_HTTP_BIND", help="HOST:PORT of /healthz (port 0: off)."
)
def run(config: str, ari_url: str | None, http_bind: str | None) -> None:
    """Run the daemon: route Stasis calls over ARI until SIGTERM.

    Connection settings come from the environment (PBXBRIDGE_ARI_URL,
    PBXBRIDGE_ARI_USER, PBXBRIDGE_ARI_APP, PBXBRIDGE_HTTP_BIND, PBXBRIDGE_LOG_LEVEL,
    PBXBRIDGE_LOG_FORMAT); the ARI password from $CREDENTIALS_DIRECTORY/ari-password,
    PBXBRIDGE_ARI_PASSWORD_FILE or PBXBRIDGE_ARI_PASSWORD.
    """
    from pbxbridge.adapters.mqtt import MqttSettings
    from pbxbridge.app import Daemon
    from pbxbridge.runtime import loop
    from pbxbridge.runtime.logs import configure_logging
    from pbxbridge.runtime.settings import Settings

    env = dict(os.environ)
    if ari_url:
        env["PBXBRIDGE_ARI_URL"] = ari_url
    if http_bind:
        env["PBXBRIDGE_HTTP_BIND"] = http_bind
    try:
        settings = Settings.from_env(env)
        if settings.mqtt_enabled:
            # Checked here too, so a bad PBXBRIDGE_MQTT_* value is one clear line
            # at start-up, not a traceback out of the daemon's build step.
            MqttSettings.from_env(env)
    except ValueError as exc:  # SettingsError is one
        base.fail(str(exc))
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(loop.run(Daemon(config, settings).run(), event_loop=settings.event_loop))


@cli.command()
@click.option("--agent", help="Only this agent's screen pops (default: every agent).")
@click.option("--tenant", help="Watch a tenant's wallboard stream instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON messages.")
@click.option("--count", type=int, default=0, help="Stop after this many messages.")
def watch(agent: str | None, tenant: str | None, as_json: bool, count: int) -> None:
    """Print screen pops live (broker settings from PBXBRIDGE_MQTT_*)."""
    import asyncio

    from pbxbridge.adapters.mqtt import MqttSettings, subscribe
    from pbxbridge.tracking.call_tracker import agent_topic_relative, tenant_topic_relative

    try:
        settings = MqttSettings.from_env()
    except ValueError as exc:
        base.fail(str(exc))
    # Topics below the prefix, built as the daemon builds them: subscribe()
    # adds the prefix (adding it here too subscribed to "<prefix>/<prefix>/...").
    if tenant:
        topic = tenant_topic_relative(tenant)
    elif agent:
        topic = agent_topic_relative(agent)
    else:
        topic = "agents/+/screenpop"  # agent_topic_relative() with a wildcard level

    async def loop() -> None:
        seen = 0
        shown = settings.full_topic(topic)
        click.echo(f"watching {shown} on {settings.host} (Ctrl-C to stop)", err=True)
        async for topic_name, payload in subscribe(settings, topic):
            click.echo(
                payload.decode("utf-8", "replace")
                if as_json
                else _describe_pop(topic_name, payload)
            )
            seen += 1
            if count and seen >= count:
                return

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(loop())


def _describe_pop(topic: str, payload: bytes) -> str:
    try:
        m = json.loads(payload)
    except ValueError:
        return f"{topic}: (not JSON) {payload[:80]!r}"
    if not isinstance(m, dict):
        return f"{topic}: {m!r}"
    if "caller" not in m:  # wallboard stream
        return (
            f"{m.get('at', '')[11:19]}  {m.get('tenant', '')}  {m.get('event', ''):<9}  "
            f"waited {m.get('waited_s', 0)} s  {m.get('agent', '')}"
        )
    caller = m.get("caller") or {}
    number = caller.get("number") or "unterdrückt"
    tenant = m.get("tenant") or {}
    flag = "  [115]" if m.get("via_115") else ""
    repeat = m.get("repeat_calls_7d")
    again = f"  {repeat}x in 7 Tagen" if repeat else ""
    return (
        f"{str(m.get('at', ''))[11:19]}  {m.get('agent', '')}  {m.get('event', '').upper():<8} "
        f'{tenant.get("name", "")}: "{tenant.get("greeting", "")}"  {number} '
        f"{caller.get('name', '')}  waited {m.get('waited_s', 0)} s{flag}{again}  "
        f"{m.get('kb_url') or ''}"
    )


@cli.command("agent-password")
@click.option("--agent", help="Print a whole 'agent: hash' line for this agent id.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the password from standard input.")
@click.option(
    "--cost",
    type=click.IntRange(10, 20),
    default=15,
    show_default=True,
    help="scrypt cost as log2(N).",
)
def agent_password(agent: str | None, from_stdin: bool, cost: int) -> None:
    """Hash an agent's password for the agents file (PBXBRIDGE_AGENTS_FILE).

    Prompts twice (hidden) unless --stdin is given. Prints only the hash (or the
    whole line with --agent); the password itself is never stored.
    """
    from pbxbridge.web.agents import agents_file_line, valid_agent_id
    from pbxbridge.web.passwords import (
        MAX_PASSWORD_CHARS,
        MIN_AGENT_PASSWORD_CHARS,
        hash_password,
    )

    if agent is not None and not valid_agent_id(agent):
        base.fail(f"--agent {agent!r}: 1-64 printable characters without surrounding spaces")
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        base.fail("empty password")
    if len(password) < MIN_AGENT_PASSWORD_CHARS:
        base.fail(
            f"password too short: {len(password)} characters, at least "
            f"{MIN_AGENT_PASSWORD_CHARS} needed (a passphrase of a few words is easy to type)"
        )
    if len(password) > MAX_PASSWORD_CHARS:
        base.fail(f"password longer than {MAX_PASSWORD_CHARS} characters")
    hashed = hash_password(password, ln=cost)
    click.echo(agents_file_line(agent, hashed) if agent else hashed)

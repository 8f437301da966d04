"""Asterisk configuration of the test bed, rendered as text files.

Everything the test bed's Asterisk reads lives in one private directory inside the
chroot (``/etc/asterisk-test``) so the Debian package's own ``/etc/asterisk`` sample
files never influence a test.  The project's shipped dialplan snippets
(``dialplans/*.conf``) are copied next to these files verbatim and ``#include``-d from
``extensions.conf``: the snippet under test is byte-for-byte the one we ship.

The layout (all on loopback, the chroot shares the host's network):

* ``127.0.0.1:5060/udp`` Asterisk PJSIP, ``127.0.0.1:8088`` HTTP/ARI,
  ``127.0.0.1:5038`` AMI.
* ``127.0.0.2`` the "carrier": sipp UAC calls from here are identified as endpoint
  ``trunk`` (context ``from-trunk`` -> ``pbxbridge-inbound``).
* ``127.0.0.4`` a second carrier: endpoint ``trunk-pure`` (context ``pure-queue``), a
  plain dialplan ``Queue()`` used as the speed baseline.
* ``127.0.0.5`` a third carrier: endpoint ``trunk-agi`` (context ``from-trunk-agi`` ->
  ``pbxbridge-agi``), the FastAGI entry point.  Its context comes from
  ``dialplans/freepbx/extensions_custom.conf``, which is not among the top-level
  ``dialplans/*.conf`` the bed copies: :func:`render_all` adds it, read byte for byte,
  as :data:`AGI_INCLUDE_NAME`.
* ``127.0.0.6`` / ``127.0.0.7`` / ``127.0.0.8`` a FreePBX 17 stand-in: endpoints
  ``trunk-freepbx``, ``trunk-freepbx-ret`` and ``trunk-freepbx-ari`` (context
  ``from-pstn``-like, see :func:`render_freepbx_contexts`) do what a FreePBX inbound
  route does before its custom destination, then go to ``pbxbridge-agi,s,1``
  directly ("Return = No"), through FreePBX's ``customdests`` Gosub ("Return =
  Yes"), or to ``pbxbridge-inbound,s,1`` (the ARI entry point behind FreePBX).
  These trunks trust ``P-Asserted-Identity`` and ``Privacy: id``, as a FreePBX
  trunk to a German carrier does: a withheld caller arrives with number and a
  restricted presentation.
* ``127.0.0.3:5071..5074`` the agents: sipp UAS instances behind the PJSIP endpoints
  ``agent1``..``agent4`` (static AOR contacts).
* ``127.0.0.3:5081`` the citizens called back by a virtual hold: endpoint ``citizen``;
  the outbound context ``testbed-citizens`` (a tenant's ``virtual_hold.outbound_context``)
  dials ``PJSIP/<number>@citizen`` after a ``TestbedCitizen`` UserEvent.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

#: Where the configuration lives inside the chroot.
CONFIG_DIR_IN_CHROOT = "/etc/asterisk-test"
#: Per-instance directories inside the chroot (kept apart from the package defaults so
#: a stale ``/var/run/asterisk`` of the Debian layout never confuses us).
RUN_DIR_IN_CHROOT = "/var/run/asterisk-test"
LOG_DIR_IN_CHROOT = "/var/log/asterisk-test"
SPOOL_DIR_IN_CHROOT = "/var/spool/asterisk-test"
LIB_DIR_IN_CHROOT = "/var/lib/asterisk-test"
#: The shipped FreePBX dialplan holding ``[pbxbridge-agi]`` (the FastAGI entry point).
AGI_DIALPLAN = (
    Path(__file__).resolve().parents[2] / "dialplans" / "freepbx" / "extensions_custom.conf"
)
#: Its name in the config dir (flat: the bed writes no subdirectories).
AGI_INCLUDE_NAME = "freepbx_extensions_custom.conf"
#: The shipped plain-Asterisk dialplan; its header recommends the trunk snippet.
INBOUND_DIALPLAN = AGI_DIALPLAN.parents[1] / "pbxbridge.conf"
#: FreePBX's own FastAGI port (its core FastAGI server; pbxbridge stays off it).
FREEPBX_FASTAGI_PORT = 4573
#: The global ``PBXBRIDGE_AGI_SECRET`` the shipped ``[pbxbridge-agi]`` passes to the
#: daemon (a loopback-only test value; daemons started without a secret ignore it).
AGI_SECRET = "pbxbridge-testbed-agi-secret"
MODULE_DIR_IN_CHROOT = "/usr/lib/x86_64-linux-gnu/asterisk/modules"

#: Modules loaded explicitly.  ``autoload=no`` keeps the start fast (about a third of
#: a second instead of several seconds) and quiet: with ``autoload=yes`` a dozen
#: modules (radius, pgsql, tds, hep, ...) print "declined to load" on every start.
#: Everything a test or the pbxbridge daemon can reasonably touch is listed.
MODULES: tuple[str, ...] = (
    # sorcery backends PJSIP and ARI need
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_memory_cache.so",
    "res_sorcery_astdb.so",
    "res_timing_timerfd.so",
    # PJSIP stack
    "res_pjproject.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",  # chan_pjsip requires it
    "chan_pjsip.so",
    "res_pjsip_sdp_rtp.so",
    "res_rtp_asterisk.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_diversion.so",
    "res_pjsip_dtmf_info.so",
    "res_pjsip_empty_info.so",
    "res_pjsip_header_funcs.so",
    "res_pjsip_rfc3326.so",
    "res_pjsip_dlg_options.so",
    "res_pjsip_registrar.so",
    "res_pjsip_nat.so",
    "res_pjsip_logger.so",
    "func_pjsip_endpoint.so",
    # bridging
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_holding.so",
    "bridge_softmix.so",
    "bridge_builtin_features.so",
    "chan_bridge_media.so",
    # codecs and file formats (the Debian prompts are GSM)
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "codec_gsm.so",
    "codec_resample.so",
    "format_gsm.so",
    "format_wav.so",
    "format_wav_gsm.so",
    "format_pcm.so",
    "format_sln.so",
    # dialplan
    "pbx_config.so",
    "app_dial.so",
    "app_queue.so",
    "app_stasis.so",
    # FastAGI entry point (AGI() lives in res_agi, which needs res_speech)
    "res_speech.so",
    "res_agi.so",
    "app_playback.so",
    "app_voicemail.so",
    "app_read.so",
    "app_verbose.so",
    "app_userevent.so",
    "app_stack.so",
    "app_echo.so",
    "app_senddtmf.so",
    "app_exec.so",
    "app_cdr.so",
    "func_callerid.so",
    "func_cdr.so",
    "func_channel.so",
    "func_logic.so",
    "func_strings.so",
    "func_global.so",
    "func_math.so",
    "func_devstate.so",
    "func_hangupcause.so",
    "func_cut.so",
    # AstDB: the virtual hold's tenants and outcomes (DB(), DB_EXISTS())
    "func_db.so",
    "res_musiconhold.so",
    "res_clioriginate.so",
    # CDR evidence for tests: Master.csv and AMI "Cdr" events
    "cdr_csv.so",
    "cdr_manager.so",
    # HTTP + ARI
    "res_http_websocket.so",
    "res_websocket_client.so",  # new in 22; res_ari needs its symbols
    "res_stasis.so",
    "res_stasis_answer.so",
    "res_stasis_playback.so",
    "res_stasis_recording.so",
    "res_stasis_snoop.so",
    "res_stasis_device_state.so",
    "res_ari.so",
    "res_ari_model.so",
    "res_ari_applications.so",
    "res_ari_asterisk.so",
    "res_ari_bridges.so",
    "res_ari_channels.so",
    "res_ari_device_states.so",
    "res_ari_endpoints.so",
    "res_ari_events.so",
    "res_ari_playbacks.so",
    "res_ari_recordings.so",
    "res_ari_sounds.so",
    "res_manager_devicestate.so",
)


@dataclasses.dataclass(frozen=True)
class QueueSettings:
    """One ``queues.conf`` queue.  Change fields to test other queue behaviour.

    Attributes:
        name: Queue name.
        members: Member interfaces, in order (``linear`` rings them in this order).
        strategy: app_queue ring strategy.
        timeout: Seconds a member rings before the queue tries the next one.
        retry: Seconds to wait before trying all members again.
        wrapuptime: Seconds a member is left alone after a call.
        autofill: Offer calls to all idle members in parallel (not one by one).
        ringinuse: Ring members whose device is already in use.
        extra: Further ``key: value`` lines, written verbatim.
    """

    name: str
    members: tuple[str, ...]
    strategy: str = "linear"
    timeout: int = 4
    retry: int = 1
    wrapuptime: int = 0
    autofill: bool = True
    ringinuse: bool = False
    extra: Mapping[str, str] = dataclasses.field(default_factory=dict)


def default_queues(agent_count: int = 4) -> tuple[QueueSettings, ...]:
    """The standard queues: ``servicecenter`` (all agents) and ``afterhours`` (last).

    Args:
        agent_count: Number of ``agentN`` endpoints.

    Returns:
        The queue definitions.
    """
    agents = tuple(f"PJSIP/agent{n}" for n in range(1, agent_count + 1))
    return (
        QueueSettings(name="servicecenter", members=agents),
        QueueSettings(name="afterhours", members=agents[-1:]),
        # Virtual hold: digit 1 leaves the queue for the offer (no periodic
        # announcement: a test presses 1 when it wants, and the bed has no prompts)
        QueueSettings(
            name="vhold",
            members=agents,
            extra={"context": "pbxbridge-vhold-offer"},
        ),
    )


@dataclasses.dataclass(frozen=True)
class TestbedConfig:
    """Everything configurable about the test bed's Asterisk.

    Attributes:
        ari_user: ARI user name (the daemon's ``Stasis`` application is ``pbxbridge``).
        ari_password: ARI password (a fixed test value: the bed only listens on
            loopback).
        ami_user: AMI user with read/write ``all``.
        ami_password: AMI secret.
        http_port: HTTP/ARI port on 127.0.0.1.
        ami_port: AMI port on 127.0.0.1.
        sip_port: PJSIP UDP port on 127.0.0.1.
        trunk_ip: Source address identified as endpoint ``trunk``.
        pure_trunk_ip: Source address identified as endpoint ``trunk-pure``.
        agi_trunk_ip: Source address identified as endpoint ``trunk-agi`` (FastAGI path).
        agi_dialplan: The shipped file with ``[pbxbridge-agi]``, included verbatim
            (``""``: none, and ``from-trunk-agi`` calls find no context).
        freepbx_trunk_ip: Endpoint ``trunk-freepbx``: FreePBX inbound route, custom
            destination ``pbxbridge-agi,s,1`` with "Return = No".
        freepbx_return_trunk_ip: Endpoint ``trunk-freepbx-ret``: the same with
            "Return = Yes" (FreePBX's ``customdests`` Gosub).
        freepbx_ari_trunk_ip: Endpoint ``trunk-freepbx-ari``: the same route, custom
            destination ``pbxbridge-inbound,s,1`` (Stasis).
        agent_ip: Address the agents' sipp UAS instances listen on.
        agent_base_port: Port of ``agent1``; ``agentN`` listens on base + N - 1.
        agent_count: Number of agent endpoints.
        citizen_port: SIP port of the sipp UAS behind endpoint ``citizen`` (on
            ``agent_ip``): the phones a virtual hold calls back.
        queues: Queue definitions.
        fallback_queue: Value of the ``PBXBRIDGE_FALLBACK_QUEUE`` global (empty: the
            snippet's default ``servicecenter``).
        verbose: Asterisk verbosity written to the ``full`` log (0 for benchmarks:
            logging every dialplan step costs time under load).
        rtp_start: First RTP port Asterisk uses.
        rtp_end: Last RTP port Asterisk uses.
    """

    __test__ = False  # not a pytest test class despite the name

    ari_user: str = "pbxbridge"
    ari_password: str = "pbxbridge-testbed"  # loopback-only test value
    ami_user: str = "pbxbridge"
    ami_password: str = "pbxbridge-testbed"  # loopback-only test value
    http_port: int = 8088
    ami_port: int = 5038
    sip_port: int = 5060
    trunk_ip: str = "127.0.0.2"
    pure_trunk_ip: str = "127.0.0.4"
    agi_trunk_ip: str = "127.0.0.5"
    agi_dialplan: str = str(AGI_DIALPLAN)
    freepbx_trunk_ip: str = "127.0.0.6"
    freepbx_return_trunk_ip: str = "127.0.0.7"
    freepbx_ari_trunk_ip: str = "127.0.0.8"
    agent_ip: str = "127.0.0.3"
    agent_base_port: int = 5071
    agent_count: int = 4
    citizen_port: int = 5081
    queues: tuple[QueueSettings, ...] = dataclasses.field(default_factory=default_queues)
    fallback_queue: str = ""
    verbose: int = 3
    rtp_start: int = 10000
    rtp_end: int = 20000

    def agent_port(self, n: int) -> int:
        """SIP port of the sipp UAS behind ``agent<n>`` (1-based).

        Args:
            n: Agent number, 1..agent_count.

        Returns:
            The UDP port.
        """
        if not 1 <= n <= self.agent_count:
            raise ValueError(f"agent number {n} outside 1..{self.agent_count}")
        return self.agent_base_port + n - 1


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def render_asterisk_conf(cfg: TestbedConfig, module_dir: str = MODULE_DIR_IN_CHROOT) -> str:
    """Render ``asterisk.conf``.

    Args:
        cfg: Test bed configuration.
        module_dir: Module directory inside the chroot.

    Returns:
        File text.
    """
    # QUIRK: the section must be "[directories]".  Debian's sample has
    # "[directories](!)", which makes it a template whose paths are all ignored; with
    # that, HTTP stayed disabled and no endpoints loaded.
    return f"""\
; Generated by tests/testbed - do not edit, rewritten on every "up".
[directories]
astetcdir => {CONFIG_DIR_IN_CHROOT}
astmoddir => {module_dir}
astvarlibdir => {LIB_DIR_IN_CHROOT}
astdbdir => {LIB_DIR_IN_CHROOT}
astkeydir => {LIB_DIR_IN_CHROOT}
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {SPOOL_DIR_IN_CHROOT}
astrundir => {RUN_DIR_IN_CHROOT}
astlogdir => {LOG_DIR_IN_CHROOT}
astcachedir => /var/cache/asterisk-test
astsbindir => /usr/sbin

[options]
verbose = {cfg.verbose}
debug = 0
; no colours in the console log file; timestamps on verbose lines
nocolor = yes
timestamp = yes
; a test bed must never refuse calls because the 2-core machine is busy
maxload = 0
; transcoding the GSM prompts is all the media work the bed does
transcode_via_sln = yes
hideconnect = yes
"""


def render_modules_conf() -> str:
    """Render ``modules.conf`` (explicit list, ``autoload=no``).

    Returns:
        File text.
    """
    loads = "\n".join(f"load => {m}" for m in MODULES)
    return f"""\
; Generated by tests/testbed.  autoload=no: start fast and only with what we use.
[modules]
autoload = no
{loads}
"""


def render_logger_conf() -> str:
    """Render ``logger.conf``.

    Returns:
        File text.
    """
    return """\
[general]
dateformat = %F %T.%3q
queue_log = yes
queue_log_to_file = yes
queue_log_name = queue_log

[logfiles]
; "full" is what to read when a test fails; verbosity comes from asterisk.conf
full => notice,warning,error,verbose,dtmf
console => notice,warning,error
"""


def render_http_conf(cfg: TestbedConfig) -> str:
    """Render ``http.conf``.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    return f"""\
[general]
enabled = yes
bindaddr = 127.0.0.1
bindport = {cfg.http_port}
"""


def render_ari_conf(cfg: TestbedConfig) -> str:
    """Render ``ari.conf``.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    return f"""\
[general]
enabled = yes
pretty = no

[{cfg.ari_user}]
type = user
read_only = no
password = {cfg.ari_password}
password_format = plain
"""


def render_manager_conf(cfg: TestbedConfig) -> str:
    """Render ``manager.conf``.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    return f"""\
[general]
enabled = yes
bindaddr = 127.0.0.1
port = {cfg.ami_port}
displayconnects = no

[{cfg.ami_user}]
secret = {cfg.ami_password}
read = all
write = all
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.0/255.0.0.0
"""


def _endpoint(
    name: str,
    context: str,
    *,
    aors: str = "",
    dtmf_mode: str = "rfc4733",
    trust_id_inbound: bool = False,
) -> str:
    lines = [
        f"[{name}]",
        "type = endpoint",
        f"context = {context}",
        "disallow = all",
        "allow = ulaw,alaw",
        "direct_media = no",
        f"dtmf_mode = {dtmf_mode}",
        # The sipp scenarios are linear scripts: a connected-line UPDATE/re-INVITE or a
        # session-timer refresh would arrive as an "unexpected message" and abort the
        # call.  Real trunks cope with both; the test bed keeps the dialog plain.
        "send_connected_line = no",
        "timers = no",
        "rtp_symmetric = no",
        "rewrite_contact = no",
    ]
    if aors:
        lines.append(f"aors = {aors}")
    if trust_id_inbound:
        # Caller ID from P-Asserted-Identity, presentation from "Privacy: id".
        lines.append("trust_id_inbound = yes")
    return "\n".join(lines) + "\n"


def render_pjsip_conf(cfg: TestbedConfig) -> str:
    """Render ``pjsip.conf``: one UDP transport, two trunks, the agents.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    parts = [
        f"""\
[system]
type = system
; only a UDP transport exists: never switch large requests to TCP
disable_tcp_switch = yes

[global]
type = global
user_agent = pbxbridge-testbed
; identify by source address first: the trunks have no credentials
endpoint_identifier_order = ip,username

[transport-udp]
type = transport
protocol = udp
bind = 127.0.0.1:{cfg.sip_port}
""",
        _endpoint("trunk", "from-trunk", dtmf_mode="info"),
        f"""\
[trunk-identify]
type = identify
endpoint = trunk
match = {cfg.trunk_ip}
""",
        _endpoint("trunk-pure", "pure-queue", dtmf_mode="info"),
        f"""\
[trunk-pure-identify]
type = identify
endpoint = trunk-pure
match = {cfg.pure_trunk_ip}
""",
        _endpoint("trunk-agi", "from-trunk-agi", dtmf_mode="info"),
        f"""\
[trunk-agi-identify]
type = identify
endpoint = trunk-agi
match = {cfg.agi_trunk_ip}
""",
    ]
    for name, ip, context in _freepbx_trunks(cfg):
        parts.append(_endpoint(name, context, dtmf_mode="info", trust_id_inbound=True))
        parts.append(f"[{name}-identify]\ntype = identify\nendpoint = {name}\nmatch = {ip}\n")
    for n in range(1, cfg.agent_count + 1):
        name = f"agent{n}"
        parts.append(
            f"""\
[{name}]
type = aor
contact = sip:{name}@{cfg.agent_ip}:{cfg.agent_port(n)}
; no OPTIONS qualify: an agent whose sipp is not running must still be "rung"
; (and time out), exactly like a real phone that does not pick up
qualify_frequency = 0
max_contacts = 1
"""
        )
        parts.append(_endpoint(name, "agents", aors=name))
    parts.append(
        f"""\
[citizen]
type = aor
contact = sip:citizen@{cfg.agent_ip}:{cfg.citizen_port}
qualify_frequency = 0
max_contacts = 1
"""
    )
    parts.append(_endpoint("citizen", "agents", aors="citizen"))
    return "\n".join(parts)


def render_queues_conf(cfg: TestbedConfig) -> str:
    """Render ``queues.conf``.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    # Asterisk 22 always emits the queue AMI events (AgentCalled, AgentConnect, ...);
    # the old eventwhencalled/eventmemberstatus options no longer exist.
    out = [
        """\
[general]
; static members only; persisted dynamic members would leak between test runs
persistentmembers = no
shared_lastcall = no
log_membername_as_agent = no
"""
    ]
    for q in cfg.queues:
        lines = [
            f"[{q.name}]",
            f"strategy = {q.strategy}",
            f"timeout = {q.timeout}",
            f"retry = {q.retry}",
            f"wrapuptime = {q.wrapuptime}",
            f"autofill = {_yes(q.autofill)}",
            f"ringinuse = {_yes(q.ringinuse)}",
            "joinempty = yes",
            "leavewhenempty = no",
            "maxlen = 0",
            # no announcements to the waiting caller: tests measure routing, not
            # prompts, and a missing prompt file would only add log noise
            "announce-frequency = 0",
            "periodic-announce-frequency = 0",
            "announce-holdtime = no",
            "announce-position = no",
            # exposes MEMBERINTERFACE etc. on the agent channel for assertions
            "setinterfacevar = yes",
            "setqueueentryvar = yes",
        ]
        lines.extend(f"{k} = {v}" for k, v in q.extra.items())
        lines.extend(f"member => {m}" for m in q.members)
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def render_extensions_conf(cfg: TestbedConfig, includes: Sequence[str]) -> str:
    """Render ``extensions.conf``, including the shipped snippets verbatim.

    Args:
        cfg: Test bed configuration.
        includes: File names (in the config dir) of the copied ``dialplans/*.conf``.

    Returns:
        File text.
    """
    include_lines = "\n".join(f'#include "{name}"' for name in includes)
    fallback = f"PBXBRIDGE_FALLBACK_QUEUE = {cfg.fallback_queue}\n" if cfg.fallback_queue else ""
    fallback += f"PBXBRIDGE_AGI_SECRET = {AGI_SECRET}\n"
    return f"""\
; Generated by tests/testbed.
[general]
static = yes
writeprotect = yes
clearglobalvars = yes

[globals]
{fallback}
; ---- the project's shipped dialplan snippets, copied verbatim ----
{include_lines}

; ---- test bed only below ----

; The carrier.  EXTEN is the dialled DID (digits, optionally with a leading "+"),
; or whatever a hostile request URI holds.  The two extensions are exactly the
; trunk snippet dialplans/pbxbridge.conf recommends (copied from its header).
[from-trunk]
{recommended_trunk_snippet()}
; DTMF probe: reads one digit (sent by sipp as SIP INFO) and stores it in the CDR
; userfield, so a test can prove INFO DTMF reached the dialplan.
exten => dtmftest,1,Answer()
 same => n,Read(PROBE_DIGITS,,1,,1,10)
 same => n,Set(CDR(userfield)=dtmf:${{PROBE_DIGITS}})
 same => n,UserEvent(TestbedDtmf,Digits: ${{PROBE_DIGITS}})
 same => n,Wait(30)
 same => n,Hangup()

; Daemon stand-ins: set the variables pbxbridge sets over ARI and continue to the
; same targets, so the shipped contexts are exercised without the daemon.
exten => sim-open,1,Set(PBXBRIDGE_TENANT=t1)
 same => n,Set(PBXBRIDGE_TENANT_NAME=Tenant One)
 same => n,Set(__PBXBRIDGE_DID=4940111)
 same => n,Set(PBXBRIDGE_VIA_115=0)
 ; the daemon may write CDR(accountcode) too: works, but Asterisk 22 logs a
 ; deprecation warning for every call
 same => n,Set(CHANNEL(accountcode)=tenant1)
 same => n,Set(CALLERID(name)=T1: ${{CALLERID(name)}})
 same => n,Set(QUEUE_PRIO=5)
 same => n,Set(PBXBRIDGE_QUEUE=servicecenter)
 same => n,Set(PBXBRIDGE_WHISPER=beep)
 same => n,Set(PBXBRIDGE_QUEUE_TIMEOUT=20)
 same => n,Goto(pbxbridge-queue,s,1)
exten => sim-closed-hangup,1,Set(PBXBRIDGE_CLOSED_ANNOUNCE=beep)
 same => n,Set(PBXBRIDGE_CLOSED_THEN=hangup)
 same => n,Goto(pbxbridge-closed,s,1)
exten => sim-closed-voicemail,1,Set(PBXBRIDGE_CLOSED_THEN=voicemail)
 same => n,Set(PBXBRIDGE_CLOSED_TARGET=1000@pbxbridge)
 same => n,Goto(pbxbridge-closed,s,1)
exten => sim-closed-forward,1,Set(PBXBRIDGE_CLOSED_THEN=forward)
 same => n,Set(PBXBRIDGE_CLOSED_TARGET=04419876543)
 same => n,Goto(pbxbridge-closed,s,1)
exten => sim-closed-queue,1,Set(PBXBRIDGE_CLOSED_ANNOUNCE=beep)
 same => n,Set(PBXBRIDGE_CLOSED_THEN=queue)
 same => n,Set(PBXBRIDGE_CLOSED_TARGET=afterhours)
 same => n,Goto(pbxbridge-closed,s,1)
exten => sim-closed-bogus,1,Set(PBXBRIDGE_CLOSED_THEN=bogus)
 same => n,Goto(pbxbridge-closed,s,1)
exten => sim-reject,1,Set(PBXBRIDGE_REJECT_ANNOUNCE=beep)
 same => n,Goto(pbxbridge-reject,s,1)

; The carrier on the FastAGI path: the same calls into [pbxbridge-agi]
; (dialplans/freepbx/extensions_custom.conf), the extension being the DID.
[from-trunk-agi]
exten => _X.,1,Goto(pbxbridge-agi,${{EXTEN}},1)
exten => _+X.,1,Goto(pbxbridge-agi,${{EXTEN}},1)
; FreePBX stand-in: "did<DID>" does what an inbound route does before its custom
; destination pbxbridge-agi,s,1 - set FROM_DID - so the "s" entry is tested too.
exten => _did.,1,Set(__FROM_DID=${{EXTEN:3}})
 same => n,Goto(pbxbridge-agi,s,1)

{render_freepbx_contexts(cfg)}
; Speed baseline: straight into the queue, no pbxbridge involved.
[pure-queue]
exten => _X.,1,Queue(servicecenter,t)
 same => n,Hangup()
exten => _+X.,1,Queue(servicecenter,t)
 same => n,Hangup()

; The outbound trunk of the virtual hold's callbacks (virtual_hold.outbound_context):
; every citizen is the sipp UAS behind endpoint "citizen"; the UserEvent tells a
; test which number was dialled and when.
[testbed-citizens]
exten => _X.,1,UserEvent(TestbedCitizen,Number: ${{EXTEN}})
 same => n,Dial(PJSIP/${{EXTEN}}@citizen,60)
 same => n,Hangup()

; Calls placed by agents are not part of any test.
[agents]
exten => _X.,1,Hangup()
"""


def recommended_trunk_snippet(path: Path = INBOUND_DIALPLAN) -> str:
    """The ``[from-trunk]`` lines the header of ``dialplans/pbxbridge.conf`` recommends.

    Read from the comment, so the test bed's carrier runs exactly what the
    file tells admins to write.

    Args:
        path: The shipped dialplan.

    Returns:
        The ``exten =>`` / ``same =>`` lines after the commented ``[from-trunk]``.

    Raises:
        ValueError: If the header has no such snippet.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    start = lines.index(";     [from-trunk]") + 1
    snippet: list[str] = []
    for line in lines[start:]:
        text = line.removeprefix(";     ")
        if not text.lstrip().startswith(("exten =>", "same =>")):
            break
        snippet.append(text)
    if not snippet:
        raise ValueError(f"{path}: no recommended [from-trunk] snippet")
    return "\n".join(snippet) + "\n"


def _freepbx_trunks(cfg: TestbedConfig) -> tuple[tuple[str, str, str], ...]:
    return (
        ("trunk-freepbx", cfg.freepbx_trunk_ip, "freepbx-from-pstn"),
        ("trunk-freepbx-ret", cfg.freepbx_return_trunk_ip, "freepbx-from-pstn-ret"),
        ("trunk-freepbx-ari", cfg.freepbx_ari_trunk_ip, "freepbx-from-pstn-ari"),
    )


def render_freepbx_contexts(cfg: TestbedConfig) -> str:
    """What a FreePBX 17 inbound route does before its custom destination.

    Written from FreePBX's documented behaviour (not from its GPL sources): the
    route's generated context sets ``__FROM_DID`` to the DID and ``CDR(did)``,
    copies the number into an empty caller name, saves the presentation in
    ``__CALLINGNAMEPRES_SV`` / ``__CALLINGNUMPRES_SV`` and sets both to
    ``allowed_not_screened``, runs FreePBX's own AGI (with
    ``LAUNCH_AGI_AS_FASTAGI`` as ``agi://127.0.0.1/<script>``, i.e. FreePBX's
    FastAGI server on port 4573; the tests start a stand-in there) and goes to
    the destination. A custom destination with "Return = Yes" is reached
    through ``customdests,dest-<id>,1``, which ``Gosub``s the target and, if it
    ever returns, goes on to the route's return destination.

    Args:
        cfg: Test bed configuration.

    Returns:
        Dialplan text.
    """
    targets = {
        "freepbx-from-pstn": "pbxbridge-agi,s,1",
        "freepbx-from-pstn-ret": "customdests,dest-1,1",
        "freepbx-from-pstn-ari": "pbxbridge-inbound,s,1",
    }
    out = ["; ---- FreePBX 17 stand-in (see render_freepbx_contexts) ----"]
    for _, _, context in _freepbx_trunks(cfg):
        out.append(f"[{context}]")
        for pattern in ("_X.", "_+X."):
            out.append(f"""\
exten => {pattern},1,Set(__FROM_DID=${{EXTEN}})
 same => n,Set(__DIRECTION=INBOUND)
 same => n,Set(CDR(did)=${{FROM_DID}})
 same => n,ExecIf($["${{CALLERID(name)}}" = ""]?Set(CALLERID(name)=${{CALLERID(num)}}))
 same => n,Set(__CALLINGNAMEPRES_SV=${{CALLERID(name-pres)}})
 same => n,Set(__CALLINGNUMPRES_SV=${{CALLERID(num-pres)}})
 same => n,Set(CALLERID(name-pres)=allowed_not_screened)
 same => n,Set(CALLERID(num-pres)=allowed_not_screened)
 same => n,AGI(agi://127.0.0.1/freepbx-inbound.agi)
 same => n,Goto({targets[context]})""")
        out.append("")
    out.append("""\
; A custom destination with "Return = Yes": Gosub the target, then the route's
; return destination (here: a hangup that marks the CDR, never reached while
; pbxbridge sends the call on).
[customdests]
exten => dest-1,1,NoOp(Entering Custom Destination pbxbridge)
 same => n,Gosub(pbxbridge-agi,s,1)
 same => n,NoOp(Returned from Custom Destination pbxbridge)
 same => n,Set(CDR(userfield)=customdests-returned)
 same => n,Hangup()
""")
    return "\n".join(out)


def render_voicemail_conf() -> str:
    """Render ``voicemail.conf`` with mailbox ``1000@pbxbridge``.

    Returns:
        File text.
    """
    return """\
[general]
format = wav
attach = no
maxsecs = 60
maxlogins = 3

[pbxbridge]
1000 => 1000,Service Centre
"""


def render_rtp_conf(cfg: TestbedConfig) -> str:
    """Render ``rtp.conf``.

    Args:
        cfg: Test bed configuration.

    Returns:
        File text.
    """
    return f"""\
[general]
rtpstart = {cfg.rtp_start}
rtpend = {cfg.rtp_end}
"""


def render_cdr_conf() -> str:
    """Render ``cdr.conf`` (CSV CDRs as evidence for tests).

    Returns:
        File text.
    """
    return """\
[general]
enable = yes
unanswered = yes
congestion = yes
batch = no
endbeforehexten = no

[csv]
usegmtime = no
loguniqueid = yes
loguserfield = yes
accountlogs = no
newcdrcolumns = yes
"""


def render_all(
    cfg: TestbedConfig, includes: Sequence[str], module_dir: str = MODULE_DIR_IN_CHROOT
) -> dict[str, str]:
    """Render every generated configuration file.

    Args:
        cfg: Test bed configuration.
        includes: Copied dialplan snippet file names to ``#include``.
        module_dir: Module directory inside the chroot.

    Returns:
        Mapping of file name (in the config dir) to content.
    """
    agi_files: dict[str, str] = {}
    if cfg.agi_dialplan:
        # Verbatim (read, not rendered): the shipped file is the tested file.
        agi_files[AGI_INCLUDE_NAME] = Path(cfg.agi_dialplan).read_text(encoding="utf-8")
    return {
        **agi_files,
        "asterisk.conf": render_asterisk_conf(cfg, module_dir),
        "modules.conf": render_modules_conf(),
        "logger.conf": render_logger_conf(),
        "http.conf": render_http_conf(cfg),
        "ari.conf": render_ari_conf(cfg),
        "manager.conf": render_manager_conf(cfg),
        "pjsip.conf": render_pjsip_conf(cfg),
        "queues.conf": render_queues_conf(cfg),
        "extensions.conf": render_extensions_conf(cfg, [*includes, *agi_files]),
        "voicemail.conf": render_voicemail_conf(),
        "rtp.conf": render_rtp_conf(cfg),
        "cdr.conf": render_cdr_conf(),
        "cdr_manager.conf": "[general]\nenabled = yes\n",
        "musiconhold.conf": "[general]\n",
        "features.conf": "[general]\n",
        "stasis.conf": "",
        "cli.conf": "",
        # present (if empty) so modules do not log "Unable to load config file"
        "acl.conf": "",
        "cel.conf": "[general]\nenable = no\n",
        "ccss.conf": "[general]\n",
        "udptl.conf": "[general]\n",
        "pjproject.conf": "",
        "websocket_client.conf": "",  # new in 22 (outbound ARI websockets)
        "indications.conf": "[general]\ncountry = de\n\n[de]\ndescription = Germany\n"
        "ringcadence = 1000,4000\ndial = 425\nbusy = 425/480,0/480\n"
        "ring = 425/1000,0/4000\ncongestion = 425/240,0/240\n",
    }

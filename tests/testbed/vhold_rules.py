"""The virtual-hold tenants on the test bed: one set of rules for the tests and the demo.

``tests/integration/test_virtual_hold_real.py`` and ``python -m tests.testbed
vhold-demo`` route with these rules: tenant ``rueckruf`` (DID :data:`DID`)
offers virtual hold on queue :data:`QUEUE` (the test bed's ``vhold`` queue,
whose ``context`` option lets a caller leave it with ``1``) and calls the
citizens back through :data:`OUTBOUND_CONTEXT` (the test bed's sipp phone
behind endpoint ``citizen``); tenant ``vorrang`` (DID :data:`PRIORITY_DID`)
joins the same queue at a higher priority, without virtual hold.
"""

from __future__ import annotations

from typing import Final

DID: Final = "+494408920"
"""Tenant ``rueckruf`` (virtual hold, queue priority 5), as the carrier dials it."""
PRIORITY_DID: Final = "+494408930"
"""Tenant ``vorrang`` (priority 9, no virtual hold), as the carrier dials it."""
QUEUE: Final = "vhold"
"""The test bed's queue whose ``context`` option leads to the offer."""
OUTBOUND_CONTEXT: Final = "testbed-citizens"
"""The test bed's context that dials the citizen's sipp phone (``TestbedCitizen`` UserEvent)."""
WHISPER: Final = "custom/pbxbridge-test"
"""The short test sound the integration tests install (0.3 s of silence)."""

_RULES: Final = """\
timezone: Europe/Berlin
calendars:
  always: {hours: {daily: ["00:00-24:00"]}}
queues:
  vhold: {queue: vhold}
tenants:
  rueckruf:
    name: Gemeinde Rückruf
    greeting: "Gemeinde Rückruf, guten Tag"
    dids: ["+49 4408 92-0"]
    calendar: always
    open: {queue: vhold, priority: 5, %(whisper)scallerid_prefix: "RR"}
    closed: {then: hangup}
    virtual_hold:
      enabled: true
      offer_after_waiting: 0
      retry_after: %(retry)d
      max_tries: %(tries)d
      answer_timeout: %(answer)d
      outbound_context: testbed-citizens
  vorrang:
    name: Gemeinde Vorrang
    dids: ["+49 4408 93-0"]
    calendar: always
    open: {queue: vhold, priority: 9, callerid_prefix: "VR"}
    closed: {then: hangup}
unknown_did: {tenant: rueckruf}
state: {path: state.sqlite}
"""


def vhold_rules(
    *, retry_after: int = 5, max_tries: int = 2, answer_timeout: int = 5, whisper: str = WHISPER
) -> str:
    """The routing rules (YAML) with the virtual-hold tenant ``rueckruf``.

    Args:
        retry_after: Seconds between a failed call to the citizen and the next try.
        max_tries: Calls to the citizen before the hold becomes a callback ticket.
        answer_timeout: Seconds the citizen's phone rings per try (the schema's minimum is 5).
        whisper: The tenant's whisper to the agent (``""``: none).

    Returns:
        The rules file's text.
    """
    return _RULES % {
        "retry": retry_after,
        "tries": max_tries,
        "answer": answer_timeout,
        "whisper": f"whisper: {whisper}, " if whisper else "",
    }

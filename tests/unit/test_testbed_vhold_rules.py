"""The virtual-hold rules the real-Asterisk tests and ``vhold-demo`` share load as meant."""

from __future__ import annotations

import pytest

from pbxbridge.config.loader import ConfigError, parse_rules
from pbxbridge.core.rules import Rules
from tests.testbed import vhold_demo
from tests.testbed.config import default_queues
from tests.testbed.vhold_rules import (
    DID,
    OUTBOUND_CONTEXT,
    PRIORITY_DID,
    QUEUE,
    WHISPER,
    vhold_rules,
)


def _load(text: str) -> Rules:
    rules, _ = parse_rules(text, "vhold-rules")
    return rules


def test_the_tests_rules_route_both_dids_into_the_vhold_queue() -> None:
    rules = _load(vhold_rules(retry_after=3, max_tries=4, answer_timeout=7))
    # DID and PRIORITY_DID are what sipp dials: "+49 4408 92-0" / "93-0" in the file
    assert rules.exact_dids[DID][0] == "rueckruf"
    assert rules.exact_dids[PRIORITY_DID][0] == "vorrang"
    rueckruf, vorrang = rules.tenants["rueckruf"], rules.tenants["vorrang"]
    assert (rueckruf.open.queue, rueckruf.open.priority) == (QUEUE, 5)
    assert (vorrang.open.queue, vorrang.open.priority) == (QUEUE, 9)
    assert rueckruf.open.whisper == WHISPER
    policy = rueckruf.virtual_hold
    assert policy.enabled and not vorrang.virtual_hold.enabled
    assert (policy.retry_delay_s, policy.max_tries, policy.answer_timeout_s) == (3, 4, 7)
    assert policy.outbound_context == OUTBOUND_CONTEXT
    # the queue exists on the test bed and leads a caller pressing 1 to the offer
    (queue,) = [q for q in default_queues() if q.name == QUEUE]
    assert queue.extra["context"] == "pbxbridge-vhold-offer"


def test_the_demo_routes_with_the_same_tenant_without_a_whisper() -> None:
    rules = _load(vhold_demo.RULES)
    rueckruf = rules.tenants["rueckruf"]
    assert rueckruf.open.whisper == ""
    policy = rueckruf.virtual_hold
    assert (policy.retry_delay_s, policy.max_tries, policy.answer_timeout_s) == (300, 3, 20)


def test_an_answer_timeout_below_the_schemas_minimum_is_refused() -> None:
    # why the tests cannot ring the citizen for less than 5 s per try
    with pytest.raises(ConfigError, match="answer_timeout"):
        _load(vhold_rules(answer_timeout=4))

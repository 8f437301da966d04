"""The rules' ``virtual_hold:`` block: the tenant's policy, errors with line and path."""

from __future__ import annotations

from pbxbridge.config import parse_rules
from pbxbridge.core.virtual_hold import VirtualHoldPolicy
from tests.unit.test_config import BASE, NAME, assert_issue, line_of, mutate, only_issue

WARDENBURG_OPEN = "    open: {queue: sc}\n    closed: {then: hangup}\n"


def with_block(block: str) -> str:
    return mutate(WARDENBURG_OPEN, WARDENBURG_OPEN + block)


class TestVirtualHoldConfig:
    def test_off_without_a_block(self) -> None:
        rules, _ = parse_rules(BASE, NAME)
        assert rules.tenants["wardenburg"].virtual_hold == VirtualHoldPolicy()
        assert not rules.tenants["wardenburg"].virtual_hold.enabled

    def test_a_block_without_enabled_stays_off(self) -> None:
        rules, _ = parse_rules(with_block("    virtual_hold: {max_tries: 2}\n"), NAME)
        policy = rules.tenants["wardenburg"].virtual_hold
        assert not policy.enabled and policy.max_tries == 2

    def test_full_block_compiles(self) -> None:
        block = (
            "    virtual_hold:\n"
            "      enabled: true\n"
            "      offer_when_estimate_over: 90\n"
            "      offer_after_waiting: 45\n"
            "      offer_when: all\n"
            "      repeat_every: 0\n"
            '      digit: "5"\n'
            "      sounds: {offer: custom/rueckruf, may_call_tomorrow: custom/morgen,"
            " agent_whisper: custom/rr-fuer}\n"
            "      retry_after: 120\n"
            "      max_tries: 4\n"
            "      answer_timeout: 25\n"
            "      entry_attempts: 3\n"
            "      allow_international: true\n"
            "      repeat_caller_priority: 7\n"
            "      outbound_context: trunk-out\n"
        )
        policy = parse_rules(with_block(block), NAME)[0].tenants["wardenburg"].virtual_hold
        assert policy.enabled
        assert (policy.offer_after_estimate_s, policy.offer_after_waited_s) == (90, 45)
        assert policy.offer_when == "all" and policy.repeat_s == 0 and policy.digit == "5"
        assert policy.sounds.offer == "custom/rueckruf"
        assert policy.sounds.may_call_tomorrow == "custom/morgen"
        assert policy.sounds.agent_whisper == "custom/rr-fuer"
        assert policy.sounds.confirmed == "pbxbridge/vhold-confirmed"  # default kept
        assert (policy.retry_delay_s, policy.max_tries, policy.answer_timeout_s) == (120, 4, 25)
        assert policy.entry_attempts == 3 and policy.allow_international
        assert policy.repeat_caller_priority == 7 and policy.outbound_context == "trunk-out"
        # Other tenants keep theirs off.
        assert not parse_rules(with_block(block), NAME)[0].tenants["oldenburg"].virtual_hold.enabled

    def test_the_agent_whisper_defaults_to_rueckruf_fuer(self) -> None:
        block = "    virtual_hold: {enabled: true}\n"
        policy = parse_rules(with_block(block), NAME)[0].tenants["wardenburg"].virtual_hold
        assert policy.sounds.agent_whisper == "pbxbridge/vhold-callback-for"

    def test_waiting_threshold_alone_has_no_estimate(self) -> None:
        block = "    virtual_hold: {enabled: true, offer_after_waiting: 60}\n"
        policy = parse_rules(with_block(block), NAME)[0].tenants["wardenburg"].virtual_hold
        assert (policy.offer_after_estimate_s, policy.offer_after_waited_s) == (None, 60)

    def test_no_threshold_means_an_estimate_over_two_minutes(self) -> None:
        block = "    virtual_hold: {enabled: true}\n"
        policy = parse_rules(with_block(block), NAME)[0].tenants["wardenburg"].virtual_hold
        assert (policy.offer_after_estimate_s, policy.offer_after_waited_s) == (120, None)

    def test_unknown_key_is_reported_with_line_and_path(self) -> None:
        text = with_block("    virtual_hold:\n      enabled: true\n      max_retries: 3\n")
        issue = only_issue(text)
        assert_issue(
            issue, line_of(text, "max_retries"), "tenants.wardenburg.virtual_hold.max_retries"
        )

    def test_bad_digit(self) -> None:
        text = with_block('    virtual_hold:\n      digit: "#"\n')
        assert_issue(
            only_issue(text), line_of(text, "digit:"), "tenants.wardenburg.virtual_hold.digit"
        )

    def test_unquoted_digit_is_an_error(self) -> None:
        text = with_block("    virtual_hold:\n      digit: 1\n")
        assert_issue(
            only_issue(text), line_of(text, "digit:"), "tenants.wardenburg.virtual_hold.digit"
        )

    def test_bad_sound_name(self) -> None:
        text = with_block("    virtual_hold:\n      sounds:\n        offer: ../etc/passwd\n")
        assert_issue(
            only_issue(text),
            line_of(text, "offer: ../"),
            "tenants.wardenburg.virtual_hold.sounds.offer",
        )

    def test_max_tries_bounds(self) -> None:
        text = with_block("    virtual_hold:\n      max_tries: 0\n")
        assert_issue(
            only_issue(text),
            line_of(text, "max_tries"),
            "tenants.wardenburg.virtual_hold.max_tries",
        )

"""topic_segment is injective: two ids never share an MQTT topic level."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbxbridge.core.screenpop import SEGMENT_LIMIT, agent_topic, topic_segment
from pbxbridge.web.agents import MAX_AGENT_ID

ids = st.text(min_size=1, max_size=80)
long_ids = st.text(min_size=200, max_size=400)
_SEGMENT = re.compile(r"^[A-Za-z0-9_.%~-]+$")


def test_the_reviews_collisions_are_gone() -> None:
    assert topic_segment("Jörg Müller") != topic_segment("Jörg Möller")
    assert topic_segment("Jörg Müller") == "J%C3%B6rg%20M%C3%BCller"
    long_a, long_b = "a" * 64 + "x", "a" * 64 + "y"
    assert topic_segment(long_a) != topic_segment(long_b)
    assert topic_segment("a_b") != topic_segment("a b") != topic_segment("a+b")


def test_plain_ids_stay_as_they_are() -> None:
    for agent in ("agent1", "jmueller", "team-2.desk_3", "A" * 64):
        assert topic_segment(agent) == agent


@given(ids, ids)
@settings(max_examples=2000)
def test_injective(a: str, b: str) -> None:
    if a != b:
        assert topic_segment(a) != topic_segment(b)


@given(ids)
@settings(max_examples=1000)
def test_decodes_back_and_never_widens_a_topic(value: str) -> None:
    segment = topic_segment(value)
    assert _SEGMENT.match(segment), segment  # no / + # NUL, nothing outside the set
    assert agent_topic("p", value).count("/") == 3
    if len(value) <= MAX_AGENT_ID and max(value, default="") < "\ud800":
        assert unquote(segment, errors="strict") == value


@given(long_ids, long_ids)
@settings(max_examples=300)
def test_long_ids_are_bounded_and_stay_apart(a: str, b: str) -> None:
    sa, sb = topic_segment(a), topic_segment(b)
    assert len(sa) <= SEGMENT_LIMIT and len(sb) <= SEGMENT_LIMIT
    if a != b:
        assert sa != sb


@given(st.text(min_size=1, max_size=MAX_AGENT_ID))
def test_every_id_the_agents_file_accepts_is_kept_whole(value: str) -> None:
    # No hash (and so no possible collision) for any id the agents file allows.
    assert "~" not in topic_segment(value)
    assert "~" not in topic_segment("\U0001f600" * MAX_AGENT_ID)  # 4 UTF-8 bytes each


def test_a_cut_segment_cannot_equal_a_whole_one() -> None:
    hashed = topic_segment("ö" * 300)
    assert len(hashed) <= SEGMENT_LIMIT and "~" in hashed
    assert not re.search(r"%[0-9A-F]?~", hashed)  # not cut inside an escape
    assert "~" not in topic_segment("a~b")  # "~" in an id is always escaped
    assert topic_segment("a~b") == "a%7Eb"


def test_empty_id_has_no_topic() -> None:
    with pytest.raises(ValueError, match="empty"):
        topic_segment("")

"""The test bed installs every prompt the virtual hold plays by default."""

from __future__ import annotations

import re
from dataclasses import asdict

from pbxbridge.core.virtual_hold import VirtualHoldSounds
from tests.testbed.testbed import PROMPT_SOURCES


def test_every_default_virtual_hold_sound_is_installed() -> None:
    # The test bed finds the prompts by a pattern over the sources; a default
    # it missed would leave `check --ari` and /healthz reporting it missing.
    installed = {
        name
        for source, pattern in PROMPT_SOURCES
        for name in re.findall(pattern, source.read_text(encoding="utf-8"))
    }
    defaults = set(asdict(VirtualHoldSounds()).values())
    assert "pbxbridge/vhold-callback-for" in defaults  # the agent's whisper
    assert defaults - installed == set()

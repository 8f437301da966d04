"""runtime/loop.py and PBXBRIDGE_EVENT_LOOP: which event loop runs the daemon."""

from __future__ import annotations

import asyncio

import pytest

from pbxbridge.runtime import loop
from pbxbridge.runtime.settings import Settings, SettingsError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


class TestRun:
    def test_uvloop_by_name(self) -> None:
        assert loop.run(_loop_module(), event_loop="uvloop").startswith("uvloop")

    def test_the_standard_loop_on_request(self) -> None:
        assert loop.run(_loop_module(), event_loop="asyncio").startswith("asyncio")

    def test_returns_what_the_coroutine_returned(self) -> None:
        async def answer() -> int:
            await asyncio.sleep(0)
            return 42

        assert loop.run(answer(), event_loop="uvloop") == 42


class TestSetting:
    def test_default_is_uvloop(self) -> None:
        assert Settings.from_env({}).event_loop == "uvloop"

    @pytest.mark.parametrize("value", ["asyncio", "ASYNCIO", " asyncio "])
    def test_asyncio_chosen(self, value: str) -> None:
        assert Settings.from_env({"PBXBRIDGE_EVENT_LOOP": value}).event_loop == "asyncio"

    def test_unknown_loop_is_refused_with_the_choices(self) -> None:
        with pytest.raises(SettingsError, match="use uvloop or asyncio"):
            Settings.from_env({"PBXBRIDGE_EVENT_LOOP": "trio"})

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


class TestRunRefusesBadSettingsInOneLine:
    """``pbxbridge run`` checks the MQTT settings before building anything."""

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            (
                {"PBXBRIDGE_MQTT_HOST": "unix:/run/mqtt.sock", "PBXBRIDGE_MQTT_PORT": "1883"},
                "a port has no meaning with a unix socket",
            ),
            ({"PBXBRIDGE_MQTT_TLS": "maybe"}, "PBXBRIDGE_MQTT_TLS='maybe': use yes or no"),
            ({"PBXBRIDGE_EVENT_LOOP": "trio"}, "use uvloop or asyncio"),
        ],
    )
    def test_bad_value_is_an_error_line_not_a_traceback(
        self, env: dict[str, str], message: str
    ) -> None:
        from click.testing import CliRunner

        from pbxbridge.cli import cli

        result = CliRunner().invoke(cli, ["run", "-c", "config/routing.yaml"], env=env)
        assert result.exit_code != 0
        assert message in result.output
        assert "Traceback" not in result.output
        assert not isinstance(result.exception, ValueError)  # handled, exits cleanly

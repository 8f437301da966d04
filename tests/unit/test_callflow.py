"""The shared route-a-call procedure's pieces that no entry point test pins down."""

from __future__ import annotations

import pytest

from pbxbridge.adapters.callflow import APPLY_RESERVE_S, menu_wait
from pbxbridge.runtime.settings import Settings, SettingsError


class TestMenuWait:
    def test_own_timeout_when_it_fits(self) -> None:
        assert menu_wait(2.0, 10.0) == 2.0

    def test_cut_to_leave_the_reserve_before_the_bound(self) -> None:
        assert menu_wait(30.0, 10.0) == 10.0 - APPLY_RESERVE_S

    def test_never_negative(self) -> None:
        assert menu_wait(5.0, 0.5) == 0.0


class TestStasisBoundSetting:
    def test_default_ten_seconds(self) -> None:
        assert Settings.from_env({}).stasis_max_s == 10.0

    def test_from_the_environment(self) -> None:
        assert Settings.from_env({"PBXBRIDGE_STASIS_MAX_S": "4.5"}).stasis_max_s == 4.5

    @pytest.mark.parametrize("value", ["1", "121", "0", "x"])
    def test_out_of_range(self, value: str) -> None:
        with pytest.raises(SettingsError, match="PBXBRIDGE_STASIS_MAX_S"):
            Settings.from_env({"PBXBRIDGE_STASIS_MAX_S": value})

"""Daemon settings from the environment; secrets from credentials, files or env."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbxbridge.runtime.settings import Settings, SettingsError, read_secret


class TestFromEnv:
    def test_defaults(self) -> None:
        s = Settings.from_env({})
        assert (s.ari_url, s.ari_user, s.ari_app) == (
            "http://127.0.0.1:8088",
            "pbxbridge",
            "pbxbridge",
        )
        assert (s.http_host, s.http_port) == ("127.0.0.1", 8090)
        assert s.ami_enabled and s.mqtt_enabled
        assert s.ari_password == ""

    def test_values(self) -> None:
        s = Settings.from_env(
            {
                "PBXBRIDGE_ARI_URL": "http://10.0.0.1:8088/",
                "PBXBRIDGE_HTTP_BIND": "[::1]:9000",
                "PBXBRIDGE_AMI_ENABLED": "no",
                "PBXBRIDGE_RING_TIMEOUT": "7.5",
                "PBXBRIDGE_LOG_LEVEL": "DEBUG",
            }
        )
        assert s.ari_url == "http://10.0.0.1:8088"
        assert (s.http_host, s.http_port) == ("::1", 9000)
        assert s.ami_enabled is False
        assert s.ring_timeout_s == 7.5
        assert s.log_level == "debug"

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("PBXBRIDGE_HTTP_BIND", "8090"),
            ("PBXBRIDGE_HTTP_BIND", "host:99999"),
            ("PBXBRIDGE_LOG_LEVEL", "loud"),
            ("PBXBRIDGE_LOG_FORMAT", "xml"),
            ("PBXBRIDGE_AMI_ENABLED", "maybe"),
            ("PBXBRIDGE_RING_TIMEOUT", "-1"),
            ("PBXBRIDGE_ARI_BACKOFF_MAX", "soon"),
        ],
    )
    def test_bad_values_name_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})

    def test_password_not_in_repr(self) -> None:
        s = Settings.from_env({"PBXBRIDGE_ARI_PASSWORD": "s3cret", "PBXBRIDGE_AMI_PASSWORD": "x9"})
        assert s.ari_password == "s3cret"
        assert "s3cret" not in repr(s) and "x9" not in repr(s)


class TestReadSecret:
    def test_credential_beats_file_beats_env(self, tmp_path: Path) -> None:
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "ari-password").write_text("from-credential\n")
        named = tmp_path / "pw"
        named.write_text("from-file\n")
        env = {
            "CREDENTIALS_DIRECTORY": str(creds),
            "PBXBRIDGE_ARI_PASSWORD_FILE": str(named),
            "PBXBRIDGE_ARI_PASSWORD": "from-env",
        }
        assert read_secret("ari", env) == "from-credential"
        (creds / "ari-password").write_text("")  # empty placeholder counts as absent
        assert read_secret("ari", env) == "from-file"
        del env["PBXBRIDGE_ARI_PASSWORD_FILE"]
        assert read_secret("ari", env) == "from-env"

    def test_unreadable_file_is_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(SettingsError, match="PBXBRIDGE_MQTT_PASSWORD_FILE"):
            read_secret("mqtt", {"PBXBRIDGE_MQTT_PASSWORD_FILE": str(tmp_path / "missing")})

    def test_hyphenated_secret_names_use_underscores_in_env(self, tmp_path: Path) -> None:
        # The credential keeps its name (web-session-password); the variables
        # must be ones systemd's Environment= and a shell can set.
        named = tmp_path / "key"
        named.write_text("from-file-0123456789\n")
        env = {"PBXBRIDGE_WEB_SESSION_PASSWORD_FILE": str(named)}
        assert read_secret("web-session", env) == "from-file-0123456789"
        assert Settings.from_env(env).web_session_secret == "from-file-0123456789"
        env = {"PBXBRIDGE_WEB_SESSION_PASSWORD": "from-env-0123456789"}
        assert Settings.from_env(env).web_session_secret == "from-env-0123456789"
        creds = tmp_path / "creds"
        creds.mkdir()
        (creds / "web-session-password").write_text("from-credential-0123\n")
        env["CREDENTIALS_DIRECTORY"] = str(creds)
        assert Settings.from_env(env).web_session_secret == "from-credential-0123"


class TestWebTrustedProxies:
    def test_parsed_and_checked(self) -> None:
        settings = Settings.from_env(
            {"PBXBRIDGE_WEB_TRUSTED_PROXIES": " 127.0.0.1, 10.0.0.0/8 ,::1,"}
        )
        assert settings.web_trusted_proxies == ("127.0.0.1", "10.0.0.0/8", "::1")
        assert Settings.from_env({}).web_trusted_proxies == ()
        with pytest.raises(SettingsError, match=r"PBXBRIDGE_WEB_TRUSTED_PROXIES.*proxy\.example"):
            Settings.from_env({"PBXBRIDGE_WEB_TRUSTED_PROXIES": "proxy.example"})

"""``pbxbridge check --ari URL``: the rules' sounds against a running Asterisk.

Each sound the rules name that Asterisk lacks is printed as an error in the
form of the rules errors, ``FILE:LINE: key.path: sound 'custom/x' (whisper)
is missing in Asterisk for language 'de'``: a caller would hear silence there.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import click
import yarl

from pbxbridge.adapters.ari.config import AriConfig
from pbxbridge.adapters.ari.errors import AriError
from pbxbridge.adapters.ari.sounds import fetch_sounds
from pbxbridge.cli import base
from pbxbridge.config.loader import line_finder
from pbxbridge.config.schema import RulesFile
from pbxbridge.config.sounds import missing_sounds, sounds_named
from pbxbridge.runtime.settings import SettingsError, read_secret


def ari_config(url: str) -> AriConfig:
    """ARI settings from ``--ari``: credentials in the URL, else the daemon's.

    ``http://user:password@host:8088`` carries its own; without them the user
    is ``PBXBRIDGE_ARI_USER`` (default ``pbxbridge``) and the password the
    daemon's (credential ``ari-password``, ``PBXBRIDGE_ARI_PASSWORD_FILE`` or
    ``PBXBRIDGE_ARI_PASSWORD``), so that the password need not be typed on a
    command line.

    Raises:
        ValueError: On a URL that is not an http(s) URL.
        SettingsError: If the password file cannot be read.
    """
    parsed = yarl.URL(url.strip())
    user = parsed.user or os.environ.get("PBXBRIDGE_ARI_USER", "pbxbridge")
    password = parsed.password if parsed.password is not None else read_secret("ari")
    base = parsed.with_user(None).with_password(None)
    # Accept the URL with or without the /ari that ARI's own paths start with.
    text = str(base).rstrip("/")
    if text.endswith("/ari"):
        text = text[: -len("/ari")]
    return AriConfig(base_url=text, username=user, password=password, app="pbxbridge-check")


def sound_errors(
    config: str, model: RulesFile, url: str, languages: tuple[str, ...] = ()
) -> list[str]:
    """The error lines for the sounds Asterisk lacks (empty: all there).

    Raises:
        ValueError: On a bad URL; SettingsError on an unreadable password file;
        AriError (or a network error) when Asterisk cannot be asked.
    """
    index = asyncio.run(fetch_sounds(ari_config(url)))
    line = line_finder(Path(config).read_bytes())
    out: list[tuple[int, str]] = []
    for item in missing_sounds(sounds_named(model), index, languages):
        for use in item.uses:
            number = line(use.loc)
            out.append(
                (
                    number,
                    f"{config}:{number}: {use.path}: sound {item.sound!r} ({use.what}) "
                    f"is missing in Asterisk for language {item.language!r}",
                )
            )
    return [text for _, text in sorted(out)]


def check_sounds(config: str, model: RulesFile, url: str, languages: tuple[str, ...]) -> None:
    """``check --ari``: print each missing sound; exit 1 if any, or if Asterisk cannot be asked."""
    try:
        errors = sound_errors(config, model, url, languages)
    except (ValueError, SettingsError) as exc:
        base.fail(f"--ari: {exc}")
    except (AriError, aiohttp.ClientError, OSError, TimeoutError) as exc:
        base.fail(f"--ari: cannot list Asterisk's sounds: {exc}")
    for text in errors:
        click.echo(text, err=True)
    if errors:
        click.echo(f"{config}: {len(errors)} sound(s) missing in Asterisk", err=True)
        sys.exit(1)


__all__ = ["ari_config", "check_sounds", "sound_errors"]

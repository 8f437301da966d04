"""``pbxbridge staffing``: agents needed for one interval (Erlang C or Erlang A)."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import click

from pbxbridge.cli import base
from pbxbridge.cli.base import cli
from pbxbridge.core import erlang

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, None: 60}


target_option = click.option(
    "--target",
    "target_text",
    default=erlang.DEFAULT_TARGET,
    show_default=True,
    help="PERCENT/SECONDS answered within (80/20, 80%/20s, 82,5/15; 80 alone: within 20 s).",
)
"""``--target`` of every command that staffs (``staffing``, ``forecast``)."""


def parse_interval(text: str) -> float:
    """An interval length: ``30m``, ``1h``, ``900s``; a bare number is minutes.

    Args:
        text: The option's value.

    Returns:
        Seconds (> 0).

    Raises:
        ValueError: On anything else, or zero.
    """
    match = _DURATION_RE.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"interval {text!r}: expected e.g. 30m, 1h or 900s")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def staffing_dict(
    result: erlang.Staffing,
    *,
    calls: float,
    interval_s: float,
    aht_s: float,
    target_level: float,
    threshold_s: float,
    patience_s: float | None,
) -> dict[str, Any]:
    """The JSON object of ``pbxbridge staffing --json`` (percentages as 0..100).

    ``asa_s`` is ``null`` when the queue is unstable (infinite waits).
    """
    return {
        "model": result.model,
        "calls": calls,
        "interval_s": interval_s,
        "aht_s": aht_s,
        "patience_s": patience_s,
        "target_pct": round(target_level * 100, 6),
        "threshold_s": threshold_s,
        "traffic_erlangs": result.traffic_erlangs,
        "agents": result.agents,
        "service_level_pct": result.service_level * 100,
        "wait_probability_pct": result.wait_probability * 100,
        "asa_s": result.asa_s if math.isfinite(result.asa_s) else None,
        "occupancy_pct": result.occupancy * 100,
        "abandon_pct": result.abandon * 100,
    }


@cli.command()
@click.option("--calls", required=True, type=float, help="Calls arriving in the interval.")
@click.option(
    "--interval",
    "interval_text",
    default="30m",
    show_default=True,
    help="Interval length (30m, 1h, 900s).",
)
@click.option(
    "--aht", required=True, type=float, help="Mean handle time in seconds (talk plus wrap-up)."
)
@target_option
@click.option(
    "--model",
    type=click.Choice(list(erlang.MODELS)),
    default="erlang-c",
    show_default=True,
    help="erlang-a counts callers who abandon.",
)
@click.option(
    "--patience", type=float, default=None, help="Callers' mean patience in seconds (erlang-a)."
)
@click.option(
    "--agents",
    type=int,
    default=None,
    help="Evaluate this many agents instead of finding the fewest.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def staffing(
    calls: float,
    interval_text: str,
    aht: float,
    target_text: str,
    model: erlang.Model,
    patience: float | None,
    agents: int | None,
    as_json: bool,
) -> None:
    """Agents needed for one interval, with service level, ASA and occupancy."""
    try:
        interval_s = parse_interval(interval_text)
        level, threshold = erlang.parse_target(target_text)
        if model == "erlang-c" and patience is not None:
            raise ValueError("--patience is for --model erlang-a")
        if agents is None:
            result = erlang.staffing(
                calls,
                interval_s,
                aht,
                target_level=level,
                threshold_s=threshold,
                model=model,
                patience_s=patience,
            )
        else:
            result = erlang.evaluate(
                calls,
                interval_s,
                aht,
                agents=agents,
                threshold_s=threshold,
                model=model,
                patience_s=patience,
            )
    except ValueError as exc:
        base.fail(str(exc))
    out = staffing_dict(
        result,
        calls=calls,
        interval_s=interval_s,
        aht_s=aht,
        target_level=level,
        threshold_s=threshold,
        patience_s=patience,
    )
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    asa = "unbounded" if out["asa_s"] is None else f"{out['asa_s']:.1f} s"
    lines = [
        f"model            {result.model}",
        f"traffic          {result.traffic_erlangs:.2f} Erlang "
        f"({calls:g} calls in {interval_s:g} s, {aht:g} s handle time)",
        f"agents           {result.agents}",
        f"service level    {out['service_level_pct']:.1f} % within {threshold:g} s "
        f"(target {out['target_pct']:g} %)",
        f"waits at all     {out['wait_probability_pct']:.1f} %",
        f"ASA              {asa}",
        f"occupancy        {out['occupancy_pct']:.1f} %",
    ]
    if result.model == "erlang-a":
        lines.append(f"abandons         {out['abandon_pct']:.1f} % (patience {patience:g} s)")
    click.echo("\n".join(lines))

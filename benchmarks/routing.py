"""Routing core speed: load time of a large rule set and decisions per second.

Generates rules with 1,000 tenants, 50,000 DIDs and 5,000 area-code prefixes,
loads them from YAML (parse + validate + compile = ``load_s``), then routes a
realistic mix of calls (exact DIDs, DID blocks, 115 by area code, 115 menu,
unknown numbers, withheld callers, open and closed times) on one core.

Usage: ``python benchmarks/routing.py [--calls N] [--seed S]``. The last line of
output is JSON with ``decisions_per_s``, ``p50_us``, ``p99_us`` and ``load_s``.
Targets (one core): p99 ≤ 20 µs, ≥ 50,000 decisions/s, load_s ≤ 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbxbridge.config import load_rules
from pbxbridge.core import Call, route

TENANTS = 1000
DIDS = 50_000
AREA_CODES = 5000


def generate(rng: random.Random) -> tuple[str, list[str], list[str]]:
    """YAML text of the rules, the DIDs and the area codes used."""
    lines = [
        "timezone: Europe/Berlin",
        "calendars:",
    ]
    for c in range(10):
        lines += [
            f"  cal{c}:",
            "    holidays: {country: DE, subdivision: NI}",
            f'    hours: {{mon-fri: ["0{6 + c % 3}:00-12:00", "13:00-18:00"], sat: ["09:00-12:00"]}}',
            '    closed: ["2026-12-24", "2026-12-31"]',
        ]
    lines += ["queues:", "  sc: {queue: servicecenter}", "  ah: {queue: afterhours}", "tenants:"]
    dids: list[str] = []
    per_tenant = DIDS // TENANTS
    area_of: list[str] = []
    for t in range(TENANTS):
        area = f"4{t + 100:04d}"  # 41100 .. 42099: distinct 5-digit area codes
        area_of.append(area)
        numbers = []
        for i in range(per_tenant):
            numbers.append(f"0{area} {1000 + i * 7}")
        numbers.append(f"+49 {area} 9*")  # a DID block per tenant
        dids.extend(n for n in numbers if not n.endswith("*"))
        lines += [
            f"  t{t}:",
            f"    name: Gemeinde {t}",
            f"    greeting: Gemeinde {t}, ServiceCenter, guten Tag",
            "    dids: [" + ", ".join(f'"{n}"' for n in numbers) + "]",
            f"    calendar: cal{t % 10}",
            f"    open: {{queue: sc, priority: {t % 10}, whisper: custom/t{t}, callerid_prefix: T{t}}}",
            "    closed: {announce: custom/closed, then: queue, queue: ah}",
            '    screen_pop: {url: "https://kb.example.org/s?t={tenant}&c={caller}"}',
        ]
    areas: list[str] = []
    lines += ["service_115:", '  dids: ["115"]', "  by_area_code:"]
    for a in range(AREA_CODES):
        # 1,000 real tenant areas plus 4,000 longer sub-areas, so prefixes nest.
        code = f"+49 {area_of[a]}" if a < TENANTS else f"+49 {area_of[a % TENANTS]}{a // TENANTS}"
        areas.append(code)
        lines.append(f'    "{code}": t{a % TENANTS}')
    lines += [
        '  otherwise: {menu: {prompt: custom/115, options: {"1": t0, "2": t1}, default: t0}}',
        "unknown_did: {tenant: t0}",
    ]
    return "\n".join(lines) + "\n", dids, areas


def calls(rng: random.Random, dids: list[str], areas: list[str], n: int) -> list[Call]:
    out: list[Call] = []
    for _ in range(n):
        kind = rng.random()
        caller = f"0{rng.choice(areas)[4:].replace(' ', '')}{rng.randint(10000, 99999)}"
        if kind < 0.70:
            out.append(Call(did=rng.choice(dids), caller=caller, caller_name="Jörg Müller"))
        elif kind < 0.80:
            area = rng.choice(dids).split()[0]
            out.append(Call(did=f"{area}9{rng.randint(100, 999)}", caller=caller))
        elif kind < 0.92:
            out.append(Call(did="115", caller=caller))
        elif kind < 0.95:
            out.append(Call(did="115", caller="anonymous"))
        elif kind < 0.97:
            out.append(Call(did="115", caller="0171 1234567", menu_digit="2"))
        else:
            out.append(Call(did=f"0800 {rng.randint(100000, 999999)}", caller=caller))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    rng = random.Random(args.seed)
    text, dids, areas = generate(rng)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(text, encoding="utf-8")
        t0 = time.perf_counter()
        rules, _ = load_rules(path)
        load_s = time.perf_counter() - t0
    assert len(rules.exact_dids) == len(dids), (len(rules.exact_dids), len(dids))
    base = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # a Monday, 06:00 local
    batch = calls(rng, dids, areas, args.calls)
    instants = [base + timedelta(minutes=rng.randint(0, 7 * 24 * 60)) for _ in range(4096)]

    # Warm up (holiday tables, caches of the interpreter).
    for i, call in enumerate(batch[:5000]):
        route(call, rules, instants[i & 4095])

    gc.collect()
    gc.disable()
    timer = time.perf_counter_ns
    samples: list[int] = []
    for i, call in enumerate(batch):
        start = timer()
        route(call, rules, instants[i & 4095])
        samples.append(timer() - start)
    t0 = time.perf_counter()
    for i, call in enumerate(batch):
        route(call, rules, instants[i & 4095])
    elapsed = time.perf_counter() - t0
    gc.enable()

    samples.sort()
    result = {
        "tenants": TENANTS,
        "dids": len(rules.exact_dids),
        "area_codes": AREA_CODES,
        "yaml_bytes": len(text.encode()),
        "calls": len(batch),
        "load_s": round(load_s, 3),
        "decisions_per_s": round(len(batch) / elapsed),
        "p50_us": round(samples[len(samples) // 2] / 1000, 2),
        "p99_us": round(samples[int(len(samples) * 0.99)] / 1000, 2),
        "max_us": round(samples[-1] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
    }
    print(
        f"routing: {result['decisions_per_s']:,} decisions/s, p50 {result['p50_us']} µs, "
        f"p99 {result['p99_us']} µs, load {result['load_s']} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

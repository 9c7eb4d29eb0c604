#!/usr/bin/env python3
"""Drill control-plane sampler: runs INSIDE the lab's gateway container ``ucg`` (standard library only).

Every ``--interval`` seconds (fixed schedule) it takes one sample with ONE ``vtysh`` run that
carries several ``-c`` commands, plus one ``ip -j route`` run:

- ``show bgp summary json``               -> session state per peer (``ipv4Unicast.peers[ip].state``)
- ``show bgp ipv4 unicast VIP/32 json``   -> BGP paths per VIP: peer, next-hop, ``stale``, ``valid``,
  ``bestpath``/``multipath`` (FRR 8.4 adds ``"stale": true`` to a path kept by graceful restart)
- ``show ip route VIP/32 json``           -> zebra's RIB: next-hops with ``active``/``fib``
- ``ip -j -4 route show table main``      -> the kernel FIB next-hops of each VIP /32

and writes one compact JSON line per sample. It stops after ``--max-duration`` or when
``--stop-file`` exists, then writes ``{"type": "end"}``. ``--latest`` is rewritten atomically with
the newest sample so whoever drives the drill can poll it cheaply.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict

try:  # in the lab container: beside this script; in tests: the package
    from agent_common import FixedSchedule  # type: ignore[import-not-found]
    from frrstate import (  # type: ignore[import-not-found]
        bgp_paths,
        kernel_next_hops,
        needs_nexthop_objects,
        nexthop_objects,
        rib_next_hops,
        split_json_stream,
        summary_peers,
    )
except ImportError:  # pragma: no cover
    from generators.in_container.agent_common import FixedSchedule
    from generators.readback.frrstate import (
        bgp_paths,
        kernel_next_hops,
        needs_nexthop_objects,
        nexthop_objects,
        rib_next_hops,
        split_json_stream,
        summary_peers,
    )


def fib_nexthops(routes: list, vip: str, objects: dict[int, list[str]] | None = None) -> list[str]:
    """Kernel next-hops of ``vip``/32, sorted (the samples' form)."""
    return sorted(kernel_next_hops(routes, vip, objects))


def vtysh_commands(vips: dict[str, str]) -> list[str]:
    cmds = ["show bgp summary json"]
    for ip in vips.values():
        cmds.append(f"show bgp ipv4 unicast {ip}/32 json")
        cmds.append(f"show ip route {ip}/32 json")
    return cmds


def run_cmd(argv: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return 124, "", f"{argv[0]} timed out after {timeout}s"
    except OSError as exc:
        return 127, "", f"{argv[0]}: {exc}"
    return proc.returncode, proc.stdout, proc.stderr


def build_sample(vips: dict[str, str], vtysh_out: str, ip_routes: list, nexthop_objs: dict[int, list[str]]) -> dict:
    """One sample from the raw outputs (pure; the agent and the unit tests share it).

    vtysh prints the JSON of each ``-c`` one after another; the values are matched to commands by
    their content (summary: ``ipv4Unicast``; BGP prefix: ``prefix``; RIB: keyed by the prefix), so an
    error line from one command cannot shift the others. FRR prints ``{}`` for a prefix it lacks.
    """
    values = [v for v in split_json_stream(vtysh_out) if isinstance(v, dict)]
    sample: dict = {"peers": {}, "vips": {}, "errors": []}
    summaries = [v for v in values if "ipv4Unicast" in v]
    if summaries:
        sample["peers"] = {ip: asdict(p) for ip, p in summary_peers(summaries[0]).items()}
    else:  # vtysh did not answer (FRR restarting?): BGP and RIB unknown (null), the kernel FIB still counts
        sample["errors"].append("no 'show bgp summary json' output with ipv4Unicast")
        sample["vips"] = {
            role: {"ip": ip, "bgp": None, "rib": None, "fib": fib_nexthops(ip_routes, ip, nexthop_objs)}
            for role, ip in vips.items()
        }
        return sample
    by_prefix = {v.get("prefix"): v for v in values if "prefix" in v}
    for role, ip in vips.items():
        prefix = f"{ip}/32"
        rib_doc = next((v for v in values if prefix in v), {})
        sample["vips"][role] = {
            "ip": ip,
            "bgp": [asdict(p) for p in bgp_paths(by_prefix.get(prefix, {}))],
            "rib": [asdict(nh) for nh in rib_next_hops(rib_doc, prefix)],
            "fib": fib_nexthops(ip_routes, ip, nexthop_objs),
        }
    return sample


def take_sample(vips: dict[str, str], cmd_timeout: float) -> dict:
    t_before = time.time()
    argv = ["vtysh"]
    for c in vtysh_commands(vips):
        argv += ["-c", c]
    rc, out, err = run_cmd(argv, cmd_timeout)
    rc_ip, ip_out, ip_err = run_cmd(["ip", "-j", "-4", "route", "show", "table", "main"], cmd_timeout)
    try:
        routes = json.loads(ip_out) if rc_ip == 0 and ip_out.strip() else []
    except json.JSONDecodeError:
        routes = []
    nh_objs: dict[int, list[str]] = {}
    if needs_nexthop_objects(routes):
        rc_nh, nh_out, _ = run_cmd(["ip", "-j", "nexthop", "show"], cmd_timeout)
        try:
            nh_objs = nexthop_objects(json.loads(nh_out)) if rc_nh == 0 and nh_out.strip() else {}
        except (json.JSONDecodeError, KeyError, ValueError):
            nh_objs = {}
    sample = build_sample(vips, out, routes, nh_objs)
    if rc != 0:
        sample["errors"].append(f"vtysh exit {rc}: {err.strip()[:200]}")
    if rc_ip != 0:
        sample["errors"].append(f"ip route exit {rc_ip}: {ip_err.strip()[:200]}")
    t_after = time.time()
    sample.update({"type": "sample", "t": (t_before + t_after) / 2, "t_before": t_before, "t_after": t_after})
    if not sample["errors"]:
        del sample["errors"]
    return sample


def write_latest(path: str | None, sample: dict) -> None:
    if not path:
        return
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(sample, fh, sort_keys=True)
    os.replace(tmp, path)


def run(args: argparse.Namespace) -> int:
    vips = dict(item.split("=", 1) for item in args.vip)
    schedule = FixedSchedule(args.interval, args.max_duration, args.stop_file, skip_overrun=True)
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(
            json.dumps(
                {
                    "type": "meta",
                    "agent": "sampler",
                    "t0": time.time(),
                    "interval": args.interval,
                    "vips": vips,
                    "pid": os.getpid(),
                },
                sort_keys=True,
            )
            + "\n"
        )
        for k, _due in schedule:
            try:
                sample = take_sample(vips, cmd_timeout=max(2.0, args.interval * 5))
            except Exception as exc:  # noqa: BLE001 - a bad sample is recorded, the sampler keeps going
                sample = {"type": "sample", "t": time.time(), "peers": {}, "vips": {}, "errors": [f"sampler: {exc!r}"]}
            sample["k"] = k
            out.write(json.dumps(sample, sort_keys=True) + "\n")
            out.flush()
            write_latest(args.latest, sample)
        out.write(
            json.dumps({"type": "end", "t": time.time(), "reason": schedule.reason, "samples": schedule.next_k}) + "\n"
        )
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vip", action="append", required=True, help="ROLE=IP, repeatable")
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--max-duration", type=float, default=600.0)
    p.add_argument("--stop-file")
    p.add_argument("--latest", help="file rewritten with the newest sample")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    for item in args.vip:
        if "=" not in item:
            p.error(f"--vip {item!r}: expected ROLE=IP")
    return args


if __name__ == "__main__":
    sys.exit(run(parse_args()))

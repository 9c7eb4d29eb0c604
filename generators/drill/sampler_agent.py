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

try:  # in the lab container: beside this script; in tests: the package
    from agent_common import FixedSchedule
except ImportError:  # pragma: no cover
    from generators.drill.agent_common import FixedSchedule


def split_json_stream(text: str) -> list[object]:
    """The JSON values printed one after another (vtysh with several ``-c``); junk between is skipped."""
    decoder = json.JSONDecoder()
    values: list[object] = []
    i, n = 0, len(text)
    while i < n:
        start = min((p for p in (text.find("{", i), text.find("[", i)) if p >= 0), default=-1)
        if start < 0:
            break
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        values.append(value)
        i = end
    return values


def peers_from_summary(summary: dict) -> dict[str, dict]:
    peers = ((summary or {}).get("ipv4Unicast") or {}).get("peers") or {}
    return {ip: {"state": p.get("state"), "pfxRcd": p.get("pfxRcd")} for ip, p in peers.items()}


def paths_from_bgp_prefix(doc: dict) -> list[dict]:
    """BGP paths of one prefix (``show bgp ipv4 unicast PREFIX json``); ``[]`` when FRR has none."""
    out = []
    for path in (doc or {}).get("paths") or []:
        nexthops = path.get("nexthops") or []
        peer = path.get("peer") or {}
        out.append({
            "peer": peer.get("peerId"),
            "nexthop": nexthops[0].get("ip") if nexthops else None,
            "stale": bool(path.get("stale", False)),
            "valid": bool(path.get("valid", False)),
            "best": bool(path.get("bestpath")),
            "multipath": bool(path.get("multipath", False)),
        })
    return out


def nexthops_from_rib(doc: dict, prefix: str) -> list[dict]:
    """Zebra next-hops of the selected BGP route for ``prefix`` (``show ip route PREFIX json``)."""
    out = []
    for route in (doc or {}).get(prefix) or []:
        if route.get("protocol") not in (None, "bgp"):
            continue
        for nh in route.get("nexthops") or []:
            if nh.get("ip"):
                out.append({"ip": nh["ip"], "active": bool(nh.get("active")), "fib": bool(nh.get("fib"))})
    return out


def fib_nexthops(routes: list, vip: str, nexthop_objects: dict[int, list[str]] | None = None) -> list[str]:
    """Kernel next-hops of ``vip``/32 from ``ip -j route`` output (single, multipath or nexthop id)."""
    gateways: list[str] = []
    for route in routes or []:
        if route.get("dst") not in (vip, f"{vip}/32"):
            continue
        if route.get("gateway"):
            gateways.append(route["gateway"])
        for nh in route.get("nexthops") or []:
            if nh.get("gateway"):
                gateways.append(nh["gateway"])
        if not gateways and route.get("nhid") is not None and nexthop_objects:
            gateways.extend(nexthop_objects.get(int(route["nhid"]), []))
    return sorted(set(gateways))


def nexthop_objects_from_ip(objs: list) -> dict[int, list[str]]:
    """``ip -j nexthop show``: id -> gateways, resolving groups one level deep."""
    by_id = {int(o["id"]): o for o in objs or [] if "id" in o}
    out: dict[int, list[str]] = {}
    for nid, obj in by_id.items():
        if obj.get("gateway"):
            out[nid] = [obj["gateway"]]
        elif obj.get("group"):
            out[nid] = [by_id[int(m["id"])]["gateway"] for m in obj["group"]
                        if int(m["id"]) in by_id and by_id[int(m["id"])].get("gateway")]
    return out


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
        sample["peers"] = peers_from_summary(summaries[0])
    else:  # vtysh did not answer (FRR restarting?): BGP and RIB unknown (null), the kernel FIB still counts
        sample["errors"].append("no 'show bgp summary json' output with ipv4Unicast")
        sample["vips"] = {role: {"ip": ip, "bgp": None, "rib": None, "fib": fib_nexthops(ip_routes, ip, nexthop_objs)}
                          for role, ip in vips.items()}
        return sample
    by_prefix = {v.get("prefix"): v for v in values if "prefix" in v}
    for role, ip in vips.items():
        prefix = f"{ip}/32"
        rib_doc = next((v for v in values if prefix in v), {})
        sample["vips"][role] = {
            "ip": ip,
            "bgp": paths_from_bgp_prefix(by_prefix.get(prefix, {})),
            "rib": nexthops_from_rib(rib_doc, prefix),
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
    if any(r.get("nhid") is not None and not r.get("gateway") and not r.get("nexthops") for r in routes):
        rc_nh, nh_out, _ = run_cmd(["ip", "-j", "nexthop", "show"], cmd_timeout)
        try:
            nh_objs = nexthop_objects_from_ip(json.loads(nh_out)) if rc_nh == 0 and nh_out.strip() else {}
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
        out.write(json.dumps({"type": "meta", "agent": "sampler", "t0": time.time(), "interval": args.interval,
                              "vips": vips, "pid": os.getpid()}, sort_keys=True) + "\n")
        for k, _due in schedule:
            try:
                sample = take_sample(vips, cmd_timeout=max(2.0, args.interval * 5))
            except Exception as exc:  # noqa: BLE001 - a bad sample is recorded, the sampler keeps going
                sample = {"type": "sample", "t": time.time(), "peers": {}, "vips": {}, "errors": [f"sampler: {exc!r}"]}
            sample["k"] = k
            out.write(json.dumps(sample, sort_keys=True) + "\n")
            out.flush()
            write_latest(args.latest, sample)
        out.write(json.dumps({"type": "end", "t": time.time(), "reason": schedule.reason, "samples": schedule.next_k}) + "\n")
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

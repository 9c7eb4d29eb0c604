"""Wait, on conditions, until the gateway sees what the rendered config promises."""

from __future__ import annotations

import json
import time
from typing import Callable

from ..checks.verify import gateway_nexthop_objects
from ..errors import LabError
from ..readback.frrstate import ESTABLISHED, kernel_next_hops, needs_nexthop_objects, route_next_hops, session_states
from .access import LabAccess
from .expect import api_probes, expectation_for

POLL_S = 0.25
# Once the routes are as Cilium decided, how long the apiserver VIP may take to answer (a real apiserver
# behind the stand-in proxy answers within about 2 s). Files whose data path cannot serve (an invalid
# CCEC, no local backend) never answer: lab-up then reports that and verify's k8s-api-via-vip says why.
API_GRACE_S = 20.0


def snapshot(lab: LabAccess, vips: list[str]) -> dict:
    neighbors = lab.vtysh_json("show bgp neighbors json")
    sessions = session_states(neighbors)
    hops, fib = {}, {}
    for vip in vips:
        hops[vip] = sorted(route_next_hops(lab.vtysh_json(f"show ip route {vip}/32 json"), f"{vip}/32")[0])
        res = lab.exec(lab.gateway, ["ip", "-j", "route", "show", f"{vip}/32"])
        routes = json.loads(res.stdout or "[]") if res.exit_code == 0 else []
        objects = gateway_nexthop_objects(lab) if needs_nexthop_objects(routes) else None
        fib[vip] = sorted(kernel_next_hops(routes, objects=objects))
    return {"sessions": sessions, "next_hops": hops, "fib": fib}


def wait_converged(lab: LabAccess, log: Callable[[str], None], timeout: float | None = None) -> dict:
    """Until the gateway shows every session Established and each VIP's next-hops (BGP and FIB) as expected.

    On the Cilium fidelity the expectation is what Cilium advertises now (read again on every poll), and the
    Kubernetes API should also answer through the apiserver VIP from the client (``k8s-api-via-vip``): for
    at most API_GRACE_S after the routes are right; if it does not, the snapshot says so (``api_ok`` False).
    """
    cilium = getattr(lab, "fidelity", "twin") == "cilium"
    exp = expectation_for(lab)
    vips = sorted(exp.intended)
    deadline = time.monotonic() + (timeout or lab.lab.converge_timeout)
    t0 = time.monotonic()
    last = None
    routes_at: float | None = None  # when the routes were first right (the API's grace starts then)
    while True:
        try:
            if cilium:
                exp = expectation_for(lab)
                vips = sorted(exp.intended)
            snap = snapshot(lab, vips)
        except LabError as exc:  # FRR still starting: vtysh not answering yet
            snap = {"error": str(exc)}
        if "error" not in snap:
            established = sorted(ip for ip in exp.peers if snap["sessions"].get(ip) == ESTABLISHED)
            done = len(established) == len(exp.peers) and all(
                set(snap["next_hops"][v]) == set(exp.next_hops.get(v, ())) == set(snap["fib"][v]) for v in vips
            )
            line = (
                f"  {time.monotonic() - t0:5.1f}s sessions {len(established)}/{len(exp.peers)} Established; "
                + "; ".join(f"{v} {len(snap['next_hops'][v])}/{len(exp.next_hops.get(v, ()))} next-hops" for v in vips)
            )
            if not done:
                routes_at = None
            elif cilium and exp.next_hops.get(lab.vips["apiserver"]):
                # only when Cilium advertises the apiserver VIP: files that leave it unadvertised converge
                # without it, and verify's k8s-api-via-vip then says so
                routes_at = routes_at or time.monotonic()
                probes = api_probes(lab)
                snap["api"], snap["api_ok"] = probes, all(p.get("ok") for p in probes)
                line += "; API via the VIP " + ("answers" if snap["api_ok"] else "not answering yet")
                if not snap["api_ok"] and time.monotonic() - routes_at < API_GRACE_S:
                    done = False
                elif not snap["api_ok"]:
                    log(line + f" -- routes converged; the API does not answer through the VIP after "
                        f"{API_GRACE_S:g} s (`invoke verify` says why: k8s-api-via-vip)")
                    return snap
            if done:
                log(line + " -- converged")
                return snap
        else:
            line = f"  {time.monotonic() - t0:5.1f}s gateway not answering yet ({snap['error'][:80]})"
        if line.split("s ", 1)[1] != (last or "").split("s ", 1)[-1]:
            log(line)  # progress only when something changed
        last = line
        if time.monotonic() > deadline:
            raise LabError(
                f"lab did not converge within {timeout or lab.lab.converge_timeout} s; last state: {line.strip()}"
            )
        time.sleep(POLL_S)  # poll interval between condition checks, not a wait standing in for one

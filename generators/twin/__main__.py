"""``python -m generators.twin RENDERED_DIR [--node NAME] [--json]``: show the twin's plan for a rendered directory."""
from __future__ import annotations

import argparse
import json
import sys

from .plan import plan_twin


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m generators.twin", description=__doc__)
    ap.add_argument("rendered_dir")
    ap.add_argument("--node", help="also print this node's GoBGP config, HAProxy config and start commands")
    ap.add_argument("--json", action="store_true", help="expected next-hops and explanations as JSON")
    args = ap.parse_args(argv)
    plan = plan_twin(args.rendered_dir)
    if args.json:
        print(json.dumps({
            "expected_next_hops": {vip: sorted(ips) for vip, ips in plan.expected_next_hops.items()},
            "services": {k: {"ips": list(e.ips), "ip_reason": e.ip_reason,
                             "nodes": {n: {"advertised": v.advertised, "peers": v.peers, "why_not": v.why_not}
                                       for n, v in e.nodes.items()}} for k, e in plan.services.items()},
            "problems": plan.problems}, indent=2))
        return 0
    print("\n".join(plan.explain()))
    for vip, ips in sorted(plan.expected_next_hops.items()):
        print(f"expected next-hops {vip}: {', '.join(sorted(ips)) or '(none)'}")
    for problem in plan.problems:
        print(f"problem: {problem}")
    if args.node:
        node = plan.nodes.get(args.node)
        if node is None:
            print(f"no node {args.node!r}; nodes: {', '.join(plan.nodes)}", file=sys.stderr)
            return 2
        for inst in node.gobgp:
            print(f"--- {inst.config_path}\n{inst.toml}")
        print(f"--- haproxy.cfg\n{node.haproxy_cfg}--- start commands")
        for argv_ in node.start_commands():
            print(" ".join(argv_))
    return 0


if __name__ == "__main__":
    sys.exit(main())

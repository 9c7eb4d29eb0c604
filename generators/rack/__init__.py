"""Roll the rendered files out: to the rack (``invoke rack.plan`` / ``rack.apply``), or to a lab rehearsing it.

- ``shell``: a command on one machine (OpenSSH on the rack; the lab's own shells use the same interface);
- ``frrdiff`` and ``gateway``: FRR's ``router bgp`` block brought to exactly the rendered one;
- ``site``: where the rollout goes (the rack; the lab implements the same interface);
- ``rollout``: the ordered, idempotent steps and their plan.
"""

"""The twin: Cilium 1.19's BGP / LB-IPAM / CCEC semantics applied to a rendered directory, turned into what
each twin lab node runs (GoBGP 3.37 config and routes, HAProxy for the CCEC, stand-in apiserver and Traefik).

Reads only rendered files (never the inventory). Entry point: ``plan_twin(rendered_dir) -> TwinPlan``.
"""
from .plan import NodeVerdict, ServiceExplanation, TwinNode, TwinPlan, plan_rendered, plan_twin

__all__ = ["NodeVerdict", "ServiceExplanation", "TwinNode", "TwinPlan", "plan_rendered", "plan_twin"]

"""Read back what the rendered files and the gateway's FRR say, as typed objects.

One owner for every parser the later stages share, so that none of them reads dicts on its own:

- ``rendered``: a directory in the layout (ours or hand-written) -> YAML documents, k3s configs, values;
- ``selectors``: Kubernetes label selectors;
- ``durations``: google.protobuf.Duration as protojson (Cilium's CCEC parser) reads it, and the Envoy
  fields that carry one;
- ``cilium``: the Cilium resources (pool, BGP cluster/peer config with the CRD defaults, advertisement,
  Envoy configs) and Cilium's chart values;
- ``k3s``: a node as k3s registers it (name, address, labels, tls-san) from its config;
- ``traefik``: the Service the Traefik chart renders from the platform values;
- ``frrconf``: FRR's configuration (``router bgp``), and FRR versions;
- ``frrstate``: FRR's and the kernel's JSON state (sessions, neighbors with graceful restart and the
  N-bit, routes, FIB next-hops). stdlib only: it is also copied into the gateway for the drill sampler.

Nothing here knows the inventory model: a user's hand-written directory reads the same way.
"""

"""k3s-bgp-lab: one inventory renders every config of the design; a containerlab lab rehearses it."""

__version__ = "0.1.0"
TOOL = "k3s-bgp-lab"  # the name everything this tool makes carries
FIELD_MANAGER = TOOL  # its server-side apply field manager

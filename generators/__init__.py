"""k3s-bgp-lab: one inventory renders every config of the design; a containerlab lab rehearses it."""

__version__ = "0.1.0"

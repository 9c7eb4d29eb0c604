"""The Go modules of the Cilium fidelity (kube/, etcd/, cilium/), shipped as the package ``generators.k3s_images``
(pyproject.toml maps it here) and built by ``generators.gobuild``. See README.md beside this file."""

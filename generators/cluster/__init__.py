"""The one way this project talks to a Kubernetes API: the lab's apiserver now, a real k3s cluster later.

``client`` builds a :class:`kubernetes.client.ApiClient` from a :class:`~generators.cluster.client.ClusterTarget`
(server + CA + token file, or a kubeconfig; optionally through an HTTP CONNECT proxy such as
:class:`generators.lab.tunnel.ExecTunnel`) and sends raw requests with the target's timeout; ``apply``
is server-side apply, delete, get/list for any kind (CRDs and custom resources included) and the
polling loop :func:`~generators.cluster.apply.wait_until`.
"""

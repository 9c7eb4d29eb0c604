"""Code that runs INSIDE the lab's containers, not on the host.

Every file here is standard library only and is copied flat into a container (``/opt/twin`` for the
twin's process supervisor and stand-ins, the drill's run directory for the agents), next to the files
it imports by plain name (``agent_common``, ``standin_common``, and ``frrstate`` from
``generators.readback``). The host never imports these modules to run them; the unit tests import
them as ``generators.in_container.<name>`` to test their logic.

- ``twinrun.py``: starts, stops and supervises a node's daemons (GoBGP, HAProxy, stand-ins).
- ``standin_apiserver.py``, ``standin_traefik.py`` (+ ``standin_common.py``): stand-ins for the
  kube-apiserver and Traefik in the twin's nodes.
- ``probe_agent.py`` (client), ``sampler_agent.py`` (gateway), ``agent_common.py``: the drill's agents.
"""
import pathlib

DIR = pathlib.Path(__file__).resolve().parent

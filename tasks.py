"""invoke tasks: thin wrappers; the work lives in the `generators` package (also `k3s-bgp-lab ...`)."""

from __future__ import annotations

from invoke import Collection, Exit, task

INV_HELP = "inventory file (default: {})"


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(
    help={
        "inventory": INV_HELP.format("topology/rack.yml"),
        "out": "output directory, replaced atomically (default: build/rack)",
        "json": "print the rendered file list as JSON",
    }
)
def gen(c, out="build/rack", inventory="topology/rack.yml", json=False):
    """Render every config of the design from one inventory."""
    from generators.cli import cmd_gen

    _exit(cmd_gen(inventory, out, json))


@task(
    help={
        "dir": "rendered directory to check (ours or hand-written, same layout)",
        "inventory": "render this inventory to a temporary directory and check that",
        "json": "stable JSON output (see README)",
        "strict": "exit 1 on warnings too",
        "frr_version": "the gateway's FRR version, when the files don't say",
    }
)
def preflight(c, dir=None, inventory=None, json=False, strict=False, frr_version=None):
    """Catch the design's known pitfalls in rendered configs before rollout (no Docker)."""
    from generators.cli import cmd_preflight

    argv = (["--dir", dir] if dir else []) + (["--inventory", inventory] if inventory else [])
    argv += (["--json"] if json else []) + (["--strict"] if strict else [])
    argv += ["--frr-version", frr_version] if frr_version else []
    _exit(cmd_preflight(argv))


def _lab(
    command: str, inventory: str, name: str | None = None, json: bool = False, rest: list[str] | None = None
) -> None:
    from generators.lab import cli

    argv = [command, "--inventory", inventory] + (["--name", name] if name else []) + (["--json"] if json else [])
    _exit(cli.main(argv + (rest or [])))


LAB_HELP = {
    "inventory": INV_HELP.format("topology/lab.yml"),
    "name": "lab name (default: the inventory's lab.name)",
    "json": "machine-readable output",
}


@task(help=LAB_HELP)
def lab_up(c, inventory="topology/lab.yml", name=None, json=False):
    """Render, build missing images, create the bridge, deploy with containerlab and wait until converged."""
    _lab("lab-up", inventory, name, json)


@task(help={k: v for k, v in LAB_HELP.items() if k != "json"})
def lab_down(c, inventory="topology/lab.yml", name=None):
    """Remove the lab's containers, links, bridge, iptables rules and directories (idempotent)."""
    _lab("lab-down", inventory, name)


@task(help=LAB_HELP)
def status(c, inventory="topology/lab.yml", name=None, json=False):
    """Show the lab's containers, BGP sessions and VIP next-hops."""
    _lab("status", inventory, name, json)


@task(help=LAB_HELP)
def verify(c, inventory="topology/lab.yml", name=None, json=False):
    """Named checks with evidence: sessions, ECMP next-hops, FIB, TLS and HTTP data path. Exit 1 on failure."""
    _lab("verify", inventory, name, json)


@task(
    help={
        **LAB_HELP,
        "scenario": "node-power-loss, speaker-crash, speaker-graceful-stop, apiserver-down, gateway-restart or all",
        "node": "the node to break (default: the first)",
        "repeat": "runs per scenario",
        "rate": "probe attempts per second per VIP",
        "restart_delay": "speaker scenarios: restart the speaker after this many seconds "
        "(default: once its routes left the FIB)",
    }
)
def drill(
    c,
    scenario="all",
    inventory="topology/lab.yml",
    name=None,
    node=None,
    repeat=1,
    rate=10,
    json=False,
    restart_delay=None,
):
    """Break things in the running lab and measure what users lose, against what the config promises."""
    rest = ["--scenario", scenario, "--repeat", str(repeat), "--rate", str(rate)] + (["--node", node] if node else [])
    rest += ["--restart-delay", str(restart_delay)] if restart_delay is not None else []
    _lab("drill", inventory, name, False, rest + (["--json"] if json else []))


@task(
    help={
        "unit": "only the tests that need no Docker",
        "e2e": "only the end-to-end lab tests",
        "k": "pytest -k expression",
        "no_setup": "don't install or start prerequisites first",
    }
)
def test(c, unit=False, e2e=False, k=None, no_setup=False):
    """Install/start what the tests need (Debian/Ubuntu), then run pytest (unit and e2e by default)."""
    from generators.testing import run_tests

    _exit(run_tests(unit=unit, e2e=e2e, keyword=k, ensure=not no_setup))


@task
def setup(c):
    """Install and start the lab's prerequisites: docker.io + dockerd, containerlab, GoBGP, FRR (Debian/Ubuntu)."""
    from generators.lab import cli

    _exit(cli.main(["setup"]))


@task(name="build", help={"inventory": INV_HELP.format("topology/lab.yml")})
def images_build(c, inventory="topology/lab.yml"):
    """Build the lab images offline (debootstrap + docker import), tagged by content; only what changed."""
    from generators.lab import cli

    _exit(cli.main(["images-build", "--inventory", inventory]))


images = Collection("images")
images.add_task(images_build)
ns = Collection(gen, preflight, lab_up, lab_down, status, verify, drill, test, setup, images)

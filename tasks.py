"""invoke tasks: thin wrappers; the work lives in the `generators` package (also `k3s-bgp-lab <task>`).

Every task passes its options to the package's command line as strings, so that bad values get the
package's message and exit code (2), not an invoke traceback.
"""
from __future__ import annotations

from invoke import Collection, Exit, task

INV_HELP = "inventory file (default: {})"


def _exit(code: int) -> None:
    if code:
        raise Exit(code=code)


def _cli(argv: list[str]) -> None:
    from generators.cli import main

    _exit(main(argv))


def _opt(flag: str, value: object) -> list[str]:
    """``--flag VALUE`` when a value was given; ``--flag`` for True; nothing for None/False."""
    if value is None or value is False:
        return []
    return [flag] if value is True else [flag, str(value)]


@task(help={"inventory": INV_HELP.format("topology/rack.yml"),
            "out": "output directory, replaced atomically (default: build/rack)",
            "json": "print the rendered file list as JSON"})
def gen(c, out="build/rack", inventory="topology/rack.yml", json=False):
    """Render every config of the design from one inventory."""
    _cli(["gen", "--inventory", inventory, "--out", out, *_opt("--json", json)])


@task(help={"inventory": INV_HELP.format("topology/rack.yml") + "; its versions pick the schemas",
            "dir": "a rendered directory to check instead of the inventory's rendering", "json": "JSON output"})
def validate(c, inventory="topology/rack.yml", dir=None, json=False):
    """Check rendered files against the real schemas (Kubernetes, Cilium CRDs and chart, Gateway API) and FRR."""
    _cli(["validate", "--inventory", inventory, *_opt("--dir", dir), *_opt("--json", json)])


@task(help={"dir": "rendered directory to check (ours or hand-written, same layout)",
            "inventory": "render this inventory to a temporary directory and check that",
            "json": "stable JSON output (see README)", "strict": "exit 1 on warnings too",
            "frr_version": "the gateway's FRR version, when the files don't say"})
def preflight(c, dir=None, inventory=None, json=False, strict=False, frr_version=None):
    """Catch the design's known pitfalls in rendered configs before rollout (no Docker)."""
    _cli(["preflight", *_opt("--dir", dir), *_opt("--inventory", inventory), *_opt("--json", json),
          *_opt("--strict", strict), *_opt("--frr-version", frr_version)])


def _lab(command: str, inventory: str, name: str | None, *rest: str) -> None:
    _cli([command, "--inventory", inventory, *_opt("--name", name), *rest])


LAB_HELP = {"inventory": INV_HELP.format("topology/lab.yml"), "name": "lab name (default: the inventory's lab.name)",
            "json": "machine-readable output"}


@task(help={**LAB_HELP, "rendered": "rehearse the files in DIR (the `gen` layout, e.g. hand-written) instead",
            "take_over": "take over a lab of this name that another checkout or inventory brought up"})
def lab_up(c, inventory="topology/lab.yml", name=None, json=False, rendered=None, take_over=False):
    """Render (or take --rendered DIR), build what is missing, deploy with containerlab, wait until converged."""
    _lab("lab-up", inventory, name, *_opt("--json", json), *_opt("--rendered", rendered),
         *_opt("--take-over", take_over))


@task(help={k: v for k, v in LAB_HELP.items() if k != "json"})
def lab_down(c, inventory="topology/lab.yml", name=None):
    """Remove the lab's containers, links, bridge, iptables rules and directories (idempotent)."""
    _lab("lab-down", inventory, name)


@task(help=LAB_HELP)
def status(c, inventory="topology/lab.yml", name=None, json=False):
    """Show the lab's containers, BGP sessions and VIP next-hops."""
    _lab("status", inventory, name, *_opt("--json", json))


@task(help=LAB_HELP)
def verify(c, inventory="topology/lab.yml", name=None, json=False):
    """Named checks with evidence: sessions, ECMP next-hops, FIB, TLS and HTTP data path. Exit 1 on failure."""
    _lab("verify", inventory, name, *_opt("--json", json))


@task(help={**LAB_HELP,
            "scenario": "node-power-loss, speaker-crash, speaker-graceful-stop, apiserver-down, gateway-restart or all",
            "node": "the node to break (default: the first)", "repeat": "runs per scenario (default 1)",
            "rate": "probe attempts per second per VIP (default 10)",
            "restart_delay": "speaker scenarios: restart the speaker after this many seconds "
                             "(default: once its routes left the FIB)"})
def drill(c, scenario="all", inventory="topology/lab.yml", name=None, node=None, repeat=None, rate=None, json=False,
          restart_delay=None):
    """Break things in the running lab and measure what users lose, against what the config promises."""
    _lab("drill", inventory, name, "--scenario", scenario, *_opt("--node", node), *_opt("--repeat", repeat),
         *_opt("--rate", rate), *_opt("--restart-delay", restart_delay), *_opt("--json", json))


@task(help={"unit": "only the tests that need no Docker", "e2e": "only the end-to-end lab tests",
            "k": "pytest -k expression", "no_setup": "don't install or start prerequisites first",
            "no_lint": "skip the ruff + mypy gate"})
def test(c, unit=False, e2e=False, k=None, no_setup=False, no_lint=False):
    """ruff + mypy, then install/start what the tests need (Debian/Ubuntu), then pytest (unit and e2e)."""
    from generators.testing import run_tests

    _exit(run_tests(unit=unit, e2e=e2e, keyword=k, ensure=not no_setup, gate=not no_lint))


@task
def lint(c):
    """The gate `invoke test` runs first: ruff (rules in pyproject.toml) and mypy."""
    from generators.testing import lint as run_lint

    _exit(run_lint())


@task(help={"no_go_builds": "skip the Cilium fidelity's Go builds (twin-fidelity labs need none)"})
def setup(c, no_go_builds=False):
    """Install and start the lab's prerequisites: docker.io + dockerd, containerlab, GoBGP, FRR, the Go builds."""
    _cli(["setup", *(["--no-go-builds"] if no_go_builds else [])])


@task(name="build", help={"inventory": INV_HELP.format("topology/lab.yml")})
def images_build(c, inventory="topology/lab.yml"):
    """Build the lab images offline (debootstrap + docker import), tagged by content; only what changed."""
    _cli(["images-build", "--inventory", inventory])


ROLLOUT_HELP = {
    "inventory": "rack inventory (default topology/rack.yml), or a lab inventory to rehearse on its running lab",
    "only": "one step: gateway, cilium-values, resources or nodes",
    "force_conflicts": "take over fields another field manager (ArgoCD, ...) owns",
    "json": "machine-readable output",
    "name": "lab name (lab inventories)",
    "dir": "roll out these files (the gen layout, e.g. hand-edited) instead of the inventory's rendering",
}


@task(name="plan", help=ROLLOUT_HELP)
def rack_plan(c, inventory="topology/rack.yml", only=None, force_conflicts=False, json=False, name=None, dir=None):
    """What rack.apply would change, per target (gateway, nodes, cluster, Cilium values); writes nothing."""
    _cli(["rack-plan", "--inventory", inventory, *_opt("--only", only), *_opt("--force-conflicts", force_conflicts),
          *_opt("--json", json), *_opt("--name", name), *_opt("--dir", dir)])


@task(name="apply", help={**ROLLOUT_HELP, "yes": "change things (without it: a dry run)",
                          "wait": "seconds each wait may take (default 180)"})
def rack_apply(c, inventory="topology/rack.yml", yes=False, only=None, force_conflicts=False, json=False,
               name=None, wait=None, dir=None):
    """The rollout in order: gateway, cilium-values, resources, nodes (one at a time); a dry run without --yes."""
    _cli(["rack-apply", "--inventory", inventory, *_opt("--yes", yes), *_opt("--only", only),
          *_opt("--force-conflicts", force_conflicts), *_opt("--json", json), *_opt("--name", name),
          *_opt("--wait", wait), *_opt("--dir", dir)])


images = Collection("images")
images.add_task(images_build)
rack = Collection("rack")
rack.add_task(rack_plan)
rack.add_task(rack_apply)
ns = Collection(gen, validate, preflight, lab_up, lab_down, status, verify, drill, test, lint, setup, images, rack)

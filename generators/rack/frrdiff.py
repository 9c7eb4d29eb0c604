"""What it takes to bring a gateway's ``router bgp`` block to exactly the rendered one.

Both sides are read with the project's FRR parser (:mod:`generators.readback.frrconf`): the live side from
``show running-config``, the wanted side from the rendered ``frr/frr.conf``. Lines are compared per
context (the router node, each address-family), as FRR prints them, so order and indentation do not
count. ``vtysh -f`` only adds lines; what the live block has and the file does not must be removed with
``no`` lines, the way FRR's own ``frr-reload.py`` does it. :func:`removal_script` writes them:

- a neighbor (address or peer-group) the file no longer names at all is removed whole
  (``no neighbor X``; members before their peer-group);
- any other line goes with ``no <line>`` in its context (``<line>`` for a line that starts with ``no``);
- a different ``router bgp`` ASN is ``no router bgp OLD`` (the plan says every session drops).

Pure functions on text: no SSH, no FRR here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from generators.readback.frrconf import FrrConfig, RouterBgp, parse_frr

ROUTER = ""  # the context of lines directly under ``router bgp``


@dataclass(frozen=True)
class BgpLine:
    context: str  # ROUTER or "address-family ipv4 unicast"
    text: str  # whitespace-normalized, as FRR prints it

    def show(self) -> str:
        return f"{self.context}: {self.text}" if self.context else self.text


@dataclass
class FrrDiff:
    live_title: str | None  # "router bgp 64512", None when the gateway has no router bgp block
    wanted_title: str
    added: list[BgpLine] = field(default_factory=list)
    removed: list[BgpLine] = field(default_factory=list)

    @property
    def replaces_router(self) -> bool:
        """The ASN changes (or the gateway has none): the block is created anew."""
        return self.live_title != self.wanted_title

    @property
    def changes(self) -> int:
        return len(self.added) + len(self.removed) + (1 if self.replaces_router and self.live_title else 0)

    def lines(self) -> list[str]:
        """The change as a reader wants it: ``- `` removed, ``+ `` added, with the context."""
        out = []
        if self.replaces_router and self.live_title:
            out.append(f"- {self.live_title} (the whole block: every session drops)")
        if self.replaces_router:
            out.append(f"+ {self.wanted_title}")
        out += [f"- {line.show()}" for line in self.removed]
        out += [f"+ {line.show()}" for line in self.added]
        return out


class FrrDiffError(ValueError):
    """A side has no default-VRF ``router bgp`` block to compare."""


def bgp_lines(router: RouterBgp) -> list[BgpLine]:
    """Every statement of the block, router-level first, then each address-family's."""
    out = [BgpLine(ROUTER, s.value) for s in router.statements]
    for family in router.address_families.values():
        out += [BgpLine(family.title, s.value) for s in family.statements]
    return out


def _router(cfg: FrrConfig) -> RouterBgp | None:
    return cfg.bgp


def diff_bgp(live_text: str, wanted_text: str, where: str = "frr/frr.conf") -> FrrDiff:
    """Lines to add and to remove so the live default-VRF ``router bgp`` block equals the wanted one."""
    wanted = _router(parse_frr(wanted_text))
    if wanted is None:
        raise FrrDiffError(f"{where}: no `router bgp` block (in the default VRF) to apply")
    live = _router(parse_frr(live_text))
    if live is None or live.title != wanted.title:
        return FrrDiff(live.title if live else None, wanted.title, added=bgp_lines(wanted),
                       removed=[])
    have, want = bgp_lines(live), bgp_lines(wanted)
    have_set, want_set = set(have), set(want)
    return FrrDiff(live.title, wanted.title, added=[x for x in want if x not in have_set],
                   removed=[x for x in have if x not in want_set])


def _neighbor_name(text: str) -> str | None:
    words = text.split()
    if words and words[0] == "no":
        words = words[1:]
    return words[1] if len(words) >= 2 and words[0] == "neighbor" else None


def removal_script(diff: FrrDiff, live_text: str, wanted_text: str) -> str:
    """The ``vtysh -f`` text that removes what only the live block has ("" when nothing is to be removed)."""
    if diff.replaces_router:
        return f"no {diff.live_title}\n" if diff.live_title else ""
    if not diff.removed:
        return ""
    wanted, live = _router(parse_frr(wanted_text)), _router(parse_frr(live_text))
    assert wanted is not None and live is not None
    still_named = {n for n in (_neighbor_name(x.text) for x in bgp_lines(wanted)) if n}
    gone = [n for n in dict.fromkeys(_neighbor_name(x.text) for x in diff.removed) if n and n not in still_named]
    groups = {name for name, n in live.neighbors.items() if n.is_peer_group}
    by_context: dict[str, list[str]] = {}
    for line in diff.removed:
        if _neighbor_name(line.text) in gone:
            continue
        undo = line.text[3:] if line.text.startswith("no ") else f"no {line.text}"
        by_context.setdefault(line.context, []).append(undo)
    # a neighbor is removed whole once; a group after its members (FRR refuses a group with members)
    out = [diff.wanted_title]
    out += [f" no neighbor {n}" for n in gone if n not in groups]
    out += [f" {x}" for x in by_context.pop(ROUTER, [])]
    for context, undos in by_context.items():
        out += [f" {context}", *(f"  {x}" for x in undos), " exit-address-family"]
    out += [f" no neighbor {n} peer-group" for n in gone if n in groups]
    out.append("exit")
    return "\n".join(out) + "\n"

"""What the operator screen reads about the line, through one small function each (Qt-free).

The screens call only these adapters: the cycle's keyed suspensions
(:attr:`InspectionCycle.suspensions`), the line handshake's status snapshot
(``runtime.line.handshake.status()``, :mod:`station.line.handshake`) and the config's
recipes. A change in either API is a change here, nowhere else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from station.display_window import GreyWindow, default_window

LINK_NAMES = {"modbus": "Modbus TCP", "opcua": "OPC UA"}


def active_suspensions(cycle: Any) -> list[str]:
    """The reasons the cycle is held (interlock, disk nearly full, operator); [] if none."""
    return list(cycle.suspensions.values())


def split_reason(reason: str) -> tuple[str, str]:
    """``"disk nearly full: 80 MB free ..."`` -> (``"disk nearly full"``, ``"80 MB free ..."``),
    ``"interlock open (door / shutter, from modbus)"`` -> (``"interlock open"``, ``"door / ..."``):
    the headline is what an operator reads from two metres, the rest is for a closer look."""
    reason = reason.strip()
    head, sep, rest = reason.partition(":")
    if sep and len(head) <= 40:
        return head.strip(), rest.strip()
    m = re.match(r"^(.{1,40}?)\s*\((.*)\)\s*$", reason)
    if m:
        return m.group(1).strip(), m.group(2).strip()
    return reason, ""


def line_status(runtime: Any) -> Any | None:
    """The line handshake's status snapshot, or None when no PLC / MES link is configured."""
    line = getattr(runtime, "line", None)
    return line.handshake.status() if line is not None else None


@dataclass(frozen=True)
class RecipeShown:
    name: str
    number: int | None = None  # the PLC's recipe number, when recipes are numbered

    def text(self) -> str:
        return self.name if not self.number else f"{self.name}  (#{self.number})"


def active_recipe(runtime: Any, status: Any | None = None) -> RecipeShown:
    """The recipe the next part is inspected with (a PLC / MES may have switched it)."""
    status = status if status is not None else line_status(runtime)
    if status is not None:
        return RecipeShown(status.active_recipe, status.active_recipe_number or None)
    name = runtime.cycle.context.recipe
    number = next((r.number for r in runtime.cfg.recipes if r.name == name), None)
    return RecipeShown(name, number)


def _recipe_config(cfg: Any, recipe: str | None) -> Any:
    rc = cfg.recipe
    if recipe is not None and recipe != rc.name:
        rc = next((r for r in cfg.recipes if r.name == recipe), rc)
    return rc


def display_presets(cfg: Any, recipe: str | None = None) -> list[tuple[str, GreyWindow]]:
    """The window / level presets of ``recipe`` (default: the start recipe), in order."""
    return [(p.name, GreyWindow(p.low, p.high)) for p in _recipe_config(cfg, recipe).display_presets]


def recipe_grey_window(cfg: Any, recipe: str | None = None) -> GreyWindow | None:
    """The grey window ``recipe``'s model sees (None: the recipe has none)."""
    gw = _recipe_config(cfg, recipe).grey_window
    return GreyWindow(gw.low, gw.high) if gw is not None else None


def shown_window(cfg: Any, recipe: str | None, top: int) -> GreyWindow:
    """The window a 16-bit frame of ``recipe`` opens with on every screen (live view, review,
    results strip thumbnails): see :func:`station.display_window.default_window`."""
    return default_window([w for _, w in display_presets(cfg, recipe)], top, recipe_grey_window(cfg, recipe))


@dataclass(frozen=True)
class LinkShown:
    """One line link (Modbus TCP / OPC UA) as the operator sees it."""

    kind: str  # "Modbus TCP" / "OPC UA"
    state: str  # what the transport reports: "listening on 0.0.0.0:502, 1 client(s)"
    clients: int | None  # connected clients, when the transport counts them
    last_trigger_at: float | None  # time.time() of the line's last trigger, None before the first

    @property
    def listening(self) -> bool:
        return self.state.startswith("listening")


def line_links(runtime: Any, status: Any | None = None) -> list[LinkShown]:
    """The configured line links and their state; [] when the station has none."""
    status = status if status is not None else line_status(runtime)
    if status is None:
        return []
    last = status.last_result
    trigger_at = (last.timestamp - last.latency_ms / 1000.0) if last is not None else None
    out = []
    for name, text in sorted(status.links.items()):
        m = re.search(r"(\d+) client", text)
        out.append(LinkShown(LINK_NAMES.get(name, name), text, int(m.group(1)) if m else None, trigger_at))
    return out

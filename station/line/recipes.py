"""Switching the active recipe from the line (PLC by number, MES by name or number).

A recipe brings its decision thresholds, its ROI and its calibration profile (the capture
spec of this camera for that recipe). A recipe that was never calibrated on this camera
is refused (:attr:`ResultCode.NOT_CALIBRATED`): inspecting with another recipe's spec
would give verdicts nobody validated, and check-capture on every part would stop the line
just as surely while hiding why. Every switch and every refusal is in the audit chain,
with who asked (``plc:modbus``, ``opcua:user:<account>``, ``opcua:cert:<subject>``).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from calibration.profile import ProfileError, ProfileStore
from calibration.spec import ProfileSpecChecker
from station.config import RecipeConfig
from station.inspect.cycle import CycleBusy
from station.inspect.decide import DecisionPolicy
from station.line.registers import ResultCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecipeAnswer:
    """The outcome of one select request."""

    code: ResultCode  # NONE = switched (or already active)
    recipe: str  # the active recipe after the request
    number: int
    message: str

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.NONE


class RecipeSwitcher:
    """The selectable recipes of a running station and the one that is active."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        cfg = runtime.cfg
        self._recipes: list[RecipeConfig] = list(cfg.recipes) or [cfg.recipe]
        self._profiles = ProfileStore(runtime.data_dir / "calibration")
        self._serial = runtime.camera.describe().serial
        self._lock = threading.Lock()
        self.active: str = runtime.cycle.context.recipe

    def number_of(self, name: str) -> int:
        """The PLC's number for recipe ``name`` (0 when it has none)."""
        return next((getattr(r, "number", 0) for r in self._recipes if r.name == name), 0)

    @property
    def active_number(self) -> int:
        return self.number_of(self.active)

    def find(self, key: int | str) -> RecipeConfig | None:
        """A recipe by number (int or digits) or by name."""
        if isinstance(key, str) and key.strip().isdigit():
            key = int(key.strip())
        for r in self._recipes:
            if (isinstance(key, int) and getattr(r, "number", None) == key) or r.name == key:
                return r
        return None

    def select(self, key: int | str, who: str) -> RecipeAnswer:
        """Make recipe ``key`` the active one for the next part; audited either way."""
        with self._lock:
            answer = self._select(key)
        store = self.runtime.store
        action = "recipe.selected" if answer.ok else "recipe.refused"
        try:
            store.audit(action, subject=str(key), actor=who,
                        payload={"requested": key, "active": answer.recipe, "code": int(answer.code),
                                 "message": answer.message})
        except Exception:  # the switch itself stands; the audit failure is logged loudly
            log.exception("could not audit %s of recipe %r", action, key)
        log.info("%s: recipe %r -> %s (%s)", who, key, answer.recipe, answer.message)
        return answer

    def _select(self, key: int | str) -> RecipeAnswer:
        recipe = self.find(key)
        if recipe is None:
            known = ", ".join(f"{getattr(r, 'number', 0)}={r.name}" for r in self._recipes)
            return self._answer(ResultCode.UNKNOWN_RECIPE, f"unknown recipe {key!r} (configured: {known})")
        if recipe.name == self.active:
            return self._answer(ResultCode.NONE, f"recipe {recipe.name} is already active")
        refused = self._window_refusal(recipe)
        if refused is not None:
            return self._answer(ResultCode.WINDOW_MISMATCH, refused)
        try:
            profile = self._profiles.latest(self._serial, recipe.name)
        except ProfileError as exc:
            return self._answer(ResultCode.NOT_CALIBRATED, f"recipe {recipe.name}: {exc}")
        if profile is None:
            return self._answer(ResultCode.NOT_CALIBRATED,
                                f"recipe {recipe.name} has no calibration profile for camera {self._serial}; "
                                f"calibrate it first")
        cycle = self.runtime.cycle
        checker = ProfileSpecChecker(profile)
        context = replace(cycle.context, recipe=recipe.name, roi=profile.roi)
        try:
            cycle.switch_recipe(checker, DecisionPolicy(**recipe.decision.model_dump()), context)
        except CycleBusy as exc:
            return self._answer(ResultCode.NOT_READY, str(exc))
        self.runtime.checker = checker
        previous, self.active = self.active, recipe.name
        return self._answer(ResultCode.NONE, f"switched from {previous} to {recipe.name} ({profile.label})")

    def _window_refusal(self, recipe: RecipeConfig) -> str | None:
        """Why ``recipe`` cannot run on the loaded model, or None. The model learnt the images
        through one grey window; fed another, its scores mean nothing, so a recipe with a
        different window needs a station (re)started with it, not a switch."""
        window = getattr(self.runtime.cycle.detector, "window", None)
        running = (window.low, window.high) if window is not None else None
        wanted = (recipe.grey_window.low, recipe.grey_window.high) if recipe.grey_window is not None else None
        if running == wanted:
            return None
        return (f"recipe {recipe.name} has grey window {_window_text(wanted)}, the running model was trained "
                f"on {_window_text(running)}; start the station with recipe {recipe.name} instead")

    def _answer(self, code: ResultCode, message: str) -> RecipeAnswer:
        return RecipeAnswer(code, self.active, self.number_of(self.active), message)


def _window_text(window: tuple[int, int] | None) -> str:
    return "none" if window is None else f"{window[0]}..{window[1]}"

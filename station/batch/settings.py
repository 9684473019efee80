"""The inspection settings of a run, fixed in its manifest so every shard inspects alike.

Besides the model and the image, a result row depends on the station and recipe it is
filed under, the lot, the decision policy (``recipe.decision`` of ``--config``: where the
review band lies) and which calibration profile checks the capture spec. Whoever creates
the run - the first local shard, or the AWS Batch submitter before it submits - writes
them into ``run.json``; every later shard, resume, retried container and ``batch-merge``
takes them from there. A process whose own *explicit* flags disagree with the manifest
is refused (:class:`SettingsConflict`) instead of mixing two settings in one run; flags
left out are simply taken from the manifest.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from station.batch.models import ModelChoiceError, latest_profile, parse_profile
from station.batch.profiles import ProfileShipError, describe_profile
from station.inspect.decide import DecisionPolicy

DEFAULT_STATION = "batch"
DEFAULT_RECIPE = "unknown"


class SettingsConflict(ValueError):
    """This process's explicit flags disagree with the run's manifest; the message lists them."""


def normalized_policy(policy: dict[str, Any] | None) -> dict[str, float]:
    """Every :class:`DecisionPolicy` field with its value (defaults filled in), so an empty
    policy and the defaults written out compare equal."""
    try:
        return {k: float(v) for k, v in dataclasses.asdict(DecisionPolicy(**(policy or {}))).items()}
    except TypeError as exc:
        raise SettingsConflict(f"decision policy {policy!r}: {exc}") from None


@dataclass(frozen=True)
class Requested:
    """What this process was told; ``None`` (and ``no_spec`` False) means "not given"."""

    station: str | None = None
    recipe: str | None = None
    lot: str | None = None
    policy: dict[str, Any] | None = None
    no_spec: bool = False
    profile: str | None = None


@dataclass(frozen=True)
class InspectionSettings:
    station: str
    recipe: str
    lot: str
    policy: dict[str, float]
    spec: bool
    # recipe -> profile descriptor (station.batch.profiles), None: no profile, specs skipped
    profiles: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"station": self.station, "recipe": self.recipe, "lot": self.lot, "policy": dict(self.policy),
                "spec": self.spec, "profiles": dict(self.profiles)}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> InspectionSettings:
        try:
            profiles = doc["profiles"]
            if not isinstance(profiles, dict):
                raise TypeError("profiles must be an object")
            return cls(str(doc["station"]), str(doc["recipe"]), str(doc["lot"]), normalized_policy(doc["policy"]),
                       bool(doc["spec"]), dict(profiles))
        except (KeyError, TypeError, SettingsConflict) as exc:
            raise SettingsConflict(f"{where}: unreadable inspection settings ({exc})") from None


def fresh_settings(req: Requested) -> InspectionSettings:
    """The settings of a new run (profiles are added by :func:`with_profiles`)."""
    return InspectionSettings(station=req.station or DEFAULT_STATION, recipe=req.recipe or DEFAULT_RECIPE,
                              lot=req.lot or "", policy=normalized_policy(req.policy), spec=not req.no_spec)


def with_profiles(settings: InspectionSettings, recipes: Iterable[str], req: Requested, data_dir: Path,
                  say: Callable[[str], None]) -> InspectionSettings:
    """Pick each recipe's profile as a local run does: ``--profile`` for all, else the data
    dir's newest for the recipe; a recipe without one is said and checked without specs."""
    recipes = sorted(set(recipes))
    if not settings.spec:
        return dataclasses.replace(settings, profiles=dict.fromkeys(recipes))
    if req.profile:
        desc = describe_profile(parse_profile(req.profile, data_dir))
        return dataclasses.replace(settings, profiles=dict.fromkeys(recipes, desc))
    profiles: dict[str, dict[str, Any] | None] = {}
    for recipe in recipes:
        ref = latest_profile(data_dir, recipe)
        if ref is None:
            say(f"spec checks skipped for recipe {recipe!r}: no calibration profile in "
                f"{Path(data_dir) / 'calibration'} (pass --profile to use one)")
        profiles[recipe] = describe_profile(ref) if ref is not None else None
    return dataclasses.replace(settings, profiles=profiles)


def _profile_conflict(req: Requested, settings: InspectionSettings, data_dir: Path) -> str | None:
    if not req.profile:
        return None
    if not settings.spec:
        return f"--profile {req.profile}, but the run checks no capture specs (--no-spec)"
    try:
        mine = describe_profile(parse_profile(req.profile, data_dir))
    except (ModelChoiceError, ProfileShipError) as exc:
        return str(exc)  # not loadable here: it cannot be the profile the run checks against
    theirs = {d["content_hash"] for d in settings.profiles.values() if d}
    if theirs != {mine["content_hash"]}:
        names = sorted({d["identity"] for d in settings.profiles.values() if d}) or ["none"]
        return f"--profile {mine['identity']}, but the run checks against {', '.join(names)}"
    return None


def conflicts(req: Requested, settings: InspectionSettings, data_dir: Path) -> list[str]:
    """Each explicit flag of ``req`` that the run's ``settings`` contradict."""
    out = [f"--{name} {mine!r}, but the run has {theirs!r}"
           for name, mine, theirs in (("station", req.station, settings.station),
                                      ("recipe", req.recipe, settings.recipe), ("lot", req.lot, settings.lot))
           if mine is not None and mine != theirs]
    if req.policy is not None and normalized_policy(req.policy) != settings.policy:
        out.append(f"decision policy {normalized_policy(req.policy)} (--config), but the run has {settings.policy}")
    if req.no_spec and settings.spec:
        out.append("--no-spec, but the run checks capture specs")
    bad_profile = _profile_conflict(req, settings, data_dir)
    if bad_profile:
        out.append(bad_profile)
    return out


def settings_of_manifest(manifest: dict[str, Any], req: Requested, data_dir: Path, where: str
                         ) -> InspectionSettings | None:
    """The run's settings from its manifest (None for a manifest written before they were
    recorded); :class:`SettingsConflict` when this process's explicit flags disagree."""
    doc = manifest.get("settings")
    if doc is None:
        return None
    settings = InspectionSettings.from_json(doc, where)
    found = conflicts(req, settings, data_dir)
    if found:
        raise SettingsConflict(f"run {manifest.get('run_id')} was started with other inspection settings: "
                               + "; ".join(found) + ". Drop those flags to continue it as it was started, "
                               "or use a new --run-id")
    return settings

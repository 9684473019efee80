"""Calibration profiles a run checks against, pinned by content hash, and shipped with AWS runs.

A run's manifest names each recipe's profile by a *descriptor*: its identity, the sha256
of ``profile.json`` and ``reference.png`` and the profile's content hash, plus where it
is - ``root`` (a local calibration store) or ``key`` (a copy stored with the run, under
``summary/run=<id>/profiles/``). The AWS Batch submitter uploads the profiles the local
run would use next to the run (:func:`ship_profile`), since the containers have no
calibration store; a child downloads them into ``<data-dir>/batch/profile-cache/`` and
checks every file against the manifest's hashes before using it (:func:`profile_ref`),
as :mod:`station.batch.model_uri` does for the model. A local run with an S3 output ships
its profiles the same way. A local shard or resume that finds the store's profile changed
since the run began is refused rather than mixing two specs; one on another machine (the
pinned store path absent) uses that machine's store version if its content hash matches.
Descriptors come from run.json, so their names, key and hash are checked before any of them
becomes a path here.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from calibration.profile import PROFILE_FILE, REFERENCE_FILE, ProfileError
from station.batch.layout import LayoutError, run_profile_key
from station.batch.models import ProfileRef
from station.durable import publish_dir

FILES = (REFERENCE_FILE, PROFILE_FILE)  # reference first: a reader that finds profile.json finds both
CACHE_DIR = "profile-cache"
_CONTENT_HASH = re.compile(r"^[0-9a-f]{64}$")


class ProfileShipError(ValueError):
    """A profile that cannot be described, shipped or fetched; the message names it and why."""


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version_dir(ref: ProfileRef) -> Path:
    return Path(ref.root) / ref.serial / ref.recipe / f"v{ref.version}"


def describe_profile(ref: ProfileRef) -> dict[str, Any]:
    """The descriptor of a stored profile version (loaded once to prove it is valid)."""
    try:
        profile = ref.load()
        files = {name: _sha256((_version_dir(ref) / name).read_bytes()) for name in FILES}
    except (ProfileError, OSError, ValueError) as exc:
        raise ProfileShipError(f"profile {ref.identity}: {exc}") from None
    return {"identity": ref.identity, "serial": ref.serial, "recipe": ref.recipe, "version": ref.version,
            "content_hash": profile.content_hash, "files": files, "root": str(Path(ref.root).resolve())}


def ship_profile(desc: dict[str, Any], run_id: str, put: Callable[[str, bytes, str], None]) -> dict[str, Any]:
    """Upload a local profile (``desc`` with ``root``) with the run; returns the descriptor
    the children use (``key`` instead of this machine's ``root``). ``put(key, data, type)``
    writes one layout key of the run."""
    src = _version_dir(ProfileRef(Path(desc["root"]), desc["serial"], desc["recipe"], int(desc["version"])))
    out = {k: v for k, v in desc.items() if k != "root"}
    out["key"] = run_profile_key(run_id, desc["serial"], desc["recipe"], int(desc["version"]))
    for name in FILES:
        data = (src / name).read_bytes()
        if _sha256(data) != desc["files"][name]:
            raise ProfileShipError(f"{src / name} changed since it was read; not uploading it")
        put(f"{out['key']}/{name}", data, "application/json" if name == PROFILE_FILE else "image/png")
    return out


def ship_profiles(profiles: dict[str, dict[str, Any] | None], run_id: str,
                  put: Callable[[str, bytes, str], None]) -> dict[str, dict[str, Any] | None]:
    """Each recipe's descriptor with its local profile shipped (:func:`ship_profile`), each
    distinct profile once; recipes without one stay None."""
    shipped: dict[str, dict[str, Any]] = {}
    out: dict[str, dict[str, Any] | None] = {}
    for recipe, desc in profiles.items():
        if desc is not None and desc["content_hash"] not in shipped:
            shipped[desc["content_hash"]] = ship_profile(desc, run_id, put) if desc.get("root") else desc
        out[recipe] = shipped[desc["content_hash"]] if desc is not None else None
    return out


def _checked_desc(desc: dict[str, Any], run_id: str) -> None:
    """A descriptor read from a run manifest names paths on this machine (the cache folder,
    the store version): its names must be store names, its ``key`` the one the layout gives
    this run, its content hash hex - else a crafted run.json could aim a write elsewhere."""
    try:
        expected = run_profile_key(run_id, desc["serial"], desc["recipe"], int(desc["version"]))
    except LayoutError as exc:
        raise ProfileShipError(f"run manifest: profile entry {desc.get('identity')!r}: {exc}") from None
    if not _CONTENT_HASH.match(str(desc["content_hash"])):
        raise ProfileShipError(f"run manifest: profile entry {desc.get('identity')!r}: content hash "
                               f"{str(desc['content_hash'])[:80]!r} is not a sha256 hex digest")
    if desc.get("key") and desc["key"] != expected:
        raise ProfileShipError(f"run manifest: profile entry {desc.get('identity')!r}: key {str(desc['key'])[:200]!r} "
                               f"is not this run's {expected!r}")


def _inside(path: Path, root: Path) -> Path:
    if not path.resolve().is_relative_to(root.resolve()):
        raise ProfileShipError(f"profile folder {path} is outside {root}; refusing to write it")
    return path


def _verified_copy(desc: dict[str, Any], cache_root: Path, get: Callable[[str], bytes]) -> Path:
    """Download the shipped profile into ``cache_root`` (store layout), every file checked
    against the manifest's sha256 before the version directory is renamed into place."""
    final = _inside(cache_root / desc["serial"] / desc["recipe"] / f"v{int(desc['version'])}", cache_root)
    def is_valid(path: Path) -> bool:
        try:
            return all(_sha256((path / n).read_bytes()) == desc["files"][n] for n in FILES)
        except OSError:  # missing, or removed by another process right now
            return False

    if is_valid(final):
        return final
    def verified():
        for name in FILES:
            data = get(f"{desc['key']}/{name}")
            if _sha256(data) != desc["files"][name]:
                raise ProfileShipError(f"profile {desc['identity']}: {desc['key']}/{name} does not match the run "
                                       f"manifest (sha256 {_sha256(data)[:12]}, recorded {desc['files'][name][:12]})")
            yield name, data

    publish_dir(final, verified(), is_valid)
    return final


def _store_version(desc: dict[str, Any], data_dir: Path) -> tuple[ProfileRef, Any]:
    """The store version a local run pinned: in the store it was read from (``root``), or -
    where that path is not there or not readable (a shard or resume on another machine) -
    the same serial/recipe/version of this data dir's store; the caller checks its content
    hash, so a same-named but different profile is still refused."""
    pinned = ProfileRef(Path(desc["root"]), desc["serial"], desc["recipe"], int(desc["version"]))
    try:
        return pinned, pinned.load()
    except (ProfileError, OSError) as exc:
        local = ProfileRef(Path(data_dir) / "calibration", desc["serial"], desc["recipe"], int(desc["version"]))
        if Path(local.root).resolve() == Path(pinned.root).resolve():
            raise
        try:
            return local, local.load()
        except (ProfileError, OSError) as exc2:
            raise ProfileShipError(f"profile {desc.get('identity')}: not readable where the run pinned it ({exc}) "
                                   f"nor in this data dir's store ({exc2})") from None


def profile_ref(desc: dict[str, Any], data_dir: Path, get: Callable[[str], bytes], run_id: str) -> ProfileRef:
    """The loadable profile a descriptor of run ``run_id``'s manifest pins: the shipped copy
    (fetched and verified) or the local store's version, whose content must still be what
    the run began with."""
    try:
        _checked_desc(desc, run_id)
        if desc.get("key"):
            cache_base = Path(data_dir) / "batch" / CACHE_DIR
            cache_root = _inside(cache_base / desc["content_hash"][:16], cache_base)
            _verified_copy(desc, cache_root, get)
            ref = ProfileRef(cache_root, desc["serial"], desc["recipe"], int(desc["version"]))
            profile = ref.load()
        else:
            ref, profile = _store_version(desc, data_dir)
    except (KeyError, TypeError) as exc:
        raise ProfileShipError(f"run manifest: bad profile entry {desc!r} ({exc})") from None
    except (ProfileError, OSError, ValueError) as exc:
        if isinstance(exc, ProfileShipError):
            raise
        raise ProfileShipError(f"profile {desc.get('identity')}: {exc}") from None
    if profile.content_hash != desc["content_hash"]:
        raise ProfileShipError(f"profile {desc['identity']} is not the one run began with (content hash "
                               f"{profile.content_hash[:12]}, recorded {str(desc['content_hash'])[:12]})")
    return ref

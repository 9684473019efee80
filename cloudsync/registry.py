"""Which sink delivers the outbox rows of which ``sink`` name, built from the config.

A sink module registers a factory under its outbox name::

    @register_sink("s3")
    def build(cfg: LineStationConfig, data_dir: Path, ctx: SinkContext) -> Sink | None:
        ...  # None when the config does not enable it

:func:`build_sinks` imports the modules in :data:`SINK_MODULES` (each registers itself
on import) and calls every factory. Rows of a sink that no factory builds stay pending:
the station keeps queueing while a sink is not configured, and nothing is lost.
"""
from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cloudsync.limits import TokenBucket
from cloudsync.sinks.base import Sink

if TYPE_CHECKING:
    from station.config import LineStationConfig

log = logging.getLogger(__name__)

SINK_MODULES = (
    "cloudsync.sinks.s3",
    "cloudsync.sinks.stepfunctions",
    "cloudsync.sinks.sns",
    "cloudsync.sinks.mes",
)


@dataclass(frozen=True)
class SinkContext:
    """What the service shares with every sink it builds."""

    limiter: TokenBucket | None = None  # the bandwidth cap (bytes/s) over all uploads


SinkFactory = Callable[["LineStationConfig", Path, SinkContext], "Sink | None"]
_FACTORIES: dict[str, SinkFactory] = {}


def register_sink(name: str) -> Callable[[SinkFactory], SinkFactory]:
    """Decorator: ``factory`` builds the sink for outbox rows whose ``sink`` is ``name``."""
    def deco(factory: SinkFactory) -> SinkFactory:
        _FACTORIES[name] = factory
        return factory
    return deco


def registered() -> dict[str, SinkFactory]:
    _import_sink_modules()
    return dict(_FACTORIES)


def _import_sink_modules() -> None:
    for mod in SINK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a missing dependency inside the module is a real error
                raise
    if "mes" not in _FACTORIES:
        _FACTORIES["mes"] = _build_mes


def _build_mes(cfg: LineStationConfig, data_dir: Path, ctx: SinkContext) -> Sink | None:
    # The MES sink module (cloudsync.sinks.mes) defines the sink; until it registers a
    # factory of its own, build it from the 'mes' config section here.
    mes_cfg = getattr(cfg, "mes", None)
    if mes_cfg is None:
        return None
    from cloudsync.sinks.mes import MesSink

    return MesSink(data_dir, mes_cfg)


def build_sinks(cfg: LineStationConfig, data_dir: Path, ctx: SinkContext | None = None) -> dict[str, Sink]:
    """Every sink the config enables, by outbox sink name."""
    ctx = ctx or SinkContext()
    sinks: dict[str, Sink] = {}
    try:
        for name, factory in sorted(registered().items()):
            sink = factory(cfg, Path(data_dir), ctx)
            if sink is not None:
                sinks[name] = sink
    except BaseException:
        for s in sinks.values():
            s.close()
        raise
    return sinks

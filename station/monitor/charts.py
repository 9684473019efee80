"""Control charts for capture statistics: Shewhart individuals with Western Electric rules, and EWMA.

The centre line and sigma come from the calibration baseline (what the good images
measured when the capture spec was made), so a chart answers "is the capture still what
it was when the station was calibrated?", long before a spec limit is crossed.

Western Electric rules on the individuals chart (zone = distance from the centre in sigma):

1. one point beyond 3 sigma;
2. two of three consecutive points beyond 2 sigma on the same side;
3. four of five consecutive points beyond 1 sigma on the same side;
4. eight consecutive points on the same side of the centre.

The EWMA chart (``z_t = lambda x_t + (1 - lambda) z_{t-1}``, limits ``L sigma_z(t)``) sees
small sustained shifts the individuals chart misses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class Alarm:
    chart: str  # e.g. "brightness"
    rule: str  # "WE1".."WE4", "EWMA", "score_drift", ...
    index: int  # position in the series (0 = oldest) where the rule fired
    value: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def western_electric(name: str, values: Sequence[float], center: float, sigma: float,
                     sides: tuple[int, ...] = (1, -1), run_rule: bool = True) -> list[Alarm]:
    """Alarms of the four rules (each rule once, at the latest point it fired).

    ``sides``: which deviations matter, +1 above the centre, -1 below (a part sitting
    closer to the reference than at calibration is no alarm, nor is a sharper image).
    ``run_rule=False`` leaves out rule 4, which a centre estimated from few images trips
    on its own estimation error.
    """
    if sigma <= 0:
        raise ValueError(f"{name}: sigma must be > 0, got {sigma}")
    z = [(v - center) / sigma for v in values]
    found: dict[str, Alarm] = {}

    def fire(rule: str, i: int, why: str) -> None:
        found[rule] = Alarm(name, rule, i, float(values[i]), f"{name}: {why} (centre {center:.4g}, sigma {sigma:.4g})")

    for i in range(len(z)):
        if any(side * z[i] > 3 for side in sides):
            fire("WE1", i, f"point {values[i]:.4g} beyond 3 sigma")
        for side in sides:
            w3 = z[max(0, i - 2): i + 1]
            if len(w3) == 3 and sum(side * v > 2 for v in w3) >= 2:
                fire("WE2", i, f"2 of 3 points beyond 2 sigma {'above' if side > 0 else 'below'}")
            w5 = z[max(0, i - 4): i + 1]
            if len(w5) == 5 and sum(side * v > 1 for v in w5) >= 4:
                fire("WE3", i, f"4 of 5 points beyond 1 sigma {'above' if side > 0 else 'below'}")
            w8 = z[max(0, i - 7): i + 1]
            if run_rule and len(w8) == 8 and all(side * v > 0 for v in w8):
                fire("WE4", i, f"8 points in a row {'above' if side > 0 else 'below'} the centre")
    return sorted(found.values(), key=lambda a: a.rule)


def ewma(name: str, values: Sequence[float], center: float, sigma: float, *, lam: float = 0.2, L: float = 3.0,
         sides: tuple[int, ...] = (1, -1)) -> tuple[list[float], list[Alarm]]:
    """The EWMA series and an alarm at the first point outside its (time-varying) limits."""
    if sigma <= 0:
        raise ValueError(f"{name}: sigma must be > 0, got {sigma}")
    zs, alarms = [], []
    z = center
    for i, v in enumerate(values):
        z = lam * v + (1 - lam) * z
        zs.append(z)
        width = L * sigma * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * (i + 1))))
        if not alarms and any(side * (z - center) > width for side in sides):
            alarms.append(Alarm(name, "EWMA", i, float(z),
                                f"{name}: EWMA {z:.4g} outside {center:.4g} +- {width:.4g} (sustained shift)"))
    return zs, alarms

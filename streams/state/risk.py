"""The documented risk model (``risk/model.yaml``): subject dimensions → risk level and score.

Loaded once; ``assess`` is a handful of dict look-ups so it can run on every state change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LEVELS = ("LOW", "MEDIUM", "HIGH")


@dataclass(frozen=True, slots=True)
class RiskModel:
    reported: dict[str, float] = field(
        default_factory=lambda: {"LOW": 10.0, "MEDIUM": 50.0, "HIGH": 85.0}
    )
    unknown: float = 30.0
    credential_compromised: float = 60.0
    account_disabled: float = 100.0
    network_zone: dict[str, float] = field(
        default_factory=lambda: {"untrusted": 30.0, "public": 10.0}
    )
    network_anomaly_each: float = 15.0
    network_anomaly_max: float = 30.0
    assurance_level: dict[str, float] = field(default_factory=lambda: {"aal1": 5.0})
    levels: tuple[tuple[str, float], ...] = (("HIGH", 70.0), ("MEDIUM", 40.0), ("LOW", 0.0))

    @classmethod
    def from_file(cls, path: Path | str) -> RiskModel:
        """Read the risk model YAML; the built-in defaults (the same numbers) if it is absent."""
        path = Path(path)
        if not path.exists():
            return cls()
        return cls.from_mapping(yaml.safe_load(path.read_text()) or {})

    @classmethod
    def from_mapping(cls, doc: dict[str, Any]) -> RiskModel:
        base = doc.get("base", {})
        factors = doc.get("factors", {})
        default = cls()
        levels = (
            tuple((str(item["level"]), float(item["min_score"])) for item in doc.get("levels", []))
            or default.levels
        )
        unknown_levels = {lvl for lvl, _ in levels} - set(LEVELS)
        if unknown_levels:
            raise ValueError(f"risk model: unknown levels {sorted(unknown_levels)}")
        return cls(
            reported={k: float(v) for k, v in base.get("reported", default.reported).items()},
            unknown=float(base.get("unknown", default.unknown)),
            credential_compromised=float(
                factors.get("credential_compromised", default.credential_compromised)
            ),
            account_disabled=float(factors.get("account_disabled", default.account_disabled)),
            network_zone={
                k: float(v) for k, v in factors.get("network_zone", default.network_zone).items()
            },
            network_anomaly_each=float(
                factors.get("network_anomaly_each", default.network_anomaly_each)
            ),
            network_anomaly_max=float(
                factors.get("network_anomaly_max", default.network_anomaly_max)
            ),
            assurance_level={
                k: float(v)
                for k, v in factors.get("assurance_level", default.assurance_level).items()
            },
            levels=tuple(sorted(levels, key=lambda item: -item[1])),
        )

    def assess(
        self,
        reported: dict[str, Any] | None,
        *,
        account_disabled: bool,
        credential_compromised: bool,
        zone: str,
        anomalies: int,
        assurance: str,
    ) -> tuple[str, float]:
        """Return (level, score) for one subject's current dimensions."""
        if reported is None:
            score = self.unknown
        elif "score" in reported:
            score = float(reported["score"])
        else:
            score = self.reported.get(reported["level"], self.unknown)
        if account_disabled:
            score += self.account_disabled
        if credential_compromised:
            score += self.credential_compromised
        score += self.network_zone.get(zone, 0.0)
        score += min(anomalies * self.network_anomaly_each, self.network_anomaly_max)
        score += self.assurance_level.get(assurance, 0.0)
        score = max(0.0, min(100.0, score))
        for level, min_score in self.levels:
            if score >= min_score:
                return level, score
        return "LOW", score

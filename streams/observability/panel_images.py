"""Pictures of key dashboard panels, drawn from real Prometheus data (``make dashboard-images``).

No Grafana server is installable here, so tests/deploy/test_prometheus_live.py saves the range
data of the panels Grafana would fetch (``VIGIL_DASHBOARD_DATA``) while a real Prometheus
scrapes running workers under load; this module draws them with matplotlib, one PNG per panel,
in the dashboards' dark style, into docs/images/.
"""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any

UNITS = {"s": "seconds", "ops": "per second", "short": "", "percentunit": "ratio"}


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def draw(data: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    start = float(data["start"])
    written = []
    for panel in data["panels"]:
        fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
        fig.patch.set_facecolor("#181b1f")
        ax.set_facecolor("#181b1f")
        for series in panel["series"]:
            xs, ys = [], []
            for t, v in series["values"]:
                y = float(v)
                if not math.isnan(y):
                    xs.append(float(t) - start)
                    ys.append(y)
            style = "--" if series["legend"] == "objective" else "-"
            ax.plot(xs, ys, style, linewidth=1.6, label=_short(series["legend"]))
        ax.set_title(f"{panel['title']}  ({panel['dashboard']})", color="#d8d9da", fontsize=10)
        ax.set_xlabel("seconds into the run", color="#9fa7b3", fontsize=8)
        ax.set_ylabel(UNITS.get(panel["unit"], panel["unit"]), color="#9fa7b3", fontsize=8)
        ax.tick_params(colors="#9fa7b3", labelsize=8)
        ax.grid(color="#2c3235", linewidth=0.6)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        if panel["series"]:
            ax.legend(fontsize=7, facecolor="#181b1f", labelcolor="#d8d9da", loc="upper left")
        fig.tight_layout()
        path = out / f"panel-{slug(panel['title'])}.png"
        fig.savefig(path, facecolor=fig.get_facecolor())
        plt.close(fig)
        written.append(path)
    return written


def _short(legend: str) -> str:
    """Test topics carry a random suffix (signals.risk.3fa2...): drop it from legends."""
    return re.sub(r"\.[0-9a-f]{10}\b", "", legend)


def main() -> None:
    data = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("docs/images")
    for path in draw(data, out):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()

"""Plots of ``wardwatch evaluate``'s figures (matplotlib, PNG, next to the Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from simulators.patients import SCENARIOS

TARGET_LEAD_MIN = 15.0
TARGET_FALSE_ALARMS = 1.0


def plots(result: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Write ``{stem}-leads.png`` and ``{stem}-false-alarms.png`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server or in CI
    import matplotlib.pyplot as plt

    det = result["detectors"]
    names = list(det)
    kinds = list(SCENARIOS[1:])
    paths = []

    fig, axes = plt.subplots(1, len(kinds), figsize=(3.0 * len(kinds), 4.2))
    for ax, kind in zip(axes, kinds, strict=True):
        for j, name in enumerate(names):
            e = det[name]["events"][kind]
            pts = [(x, ok) for x, ok in zip(e["leads_min"], e["leads_predictable"], strict=True)
                   if x is not None]
            xs = [j + (i * 37 % 100 - 50) / 250 for i in range(len(pts))]  # spread
            ax.scatter(xs, [x for x, _ in pts], s=14,
                       c=["tab:blue" if ok else "tab:gray" for _, ok in pts],
                       marker="o", linewidths=0)
            if e["lead_time_median_min"] is not None:
                ax.hlines(e["lead_time_median_min"], j - 0.35, j + 0.35, colors="black")
            missed = e["n"] - len(pts)
            if missed:
                ax.annotate(f"{missed} missed", (j, 0), textcoords="offset points",
                            xytext=(0, 4), ha="center", fontsize=7, color="tab:red")
        ax.axhline(TARGET_LEAD_MIN, color="tab:green", linestyle="--", linewidth=1)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
        ax.set_title(kind.replace("_", " "), fontsize=9)
    axes[0].set_ylabel("lead before the threshold crossing (min)")
    fig.suptitle("Lead time per event (blue: predictable, grey: not; bar: median; "
                 f"dashed: {TARGET_LEAD_MIN:g}-min target)", fontsize=10)
    fig.tight_layout()
    paths.append(out / f"{stem}-leads.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    fa = [det[n]["false_alarms_per_patient_day"] for n in names]
    al = [det[n]["alarms_per_patient_day"] for n in names]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], al, width=0.4, label="all alarms", color="tab:gray")
    ax.bar([i + 0.2 for i in x], fa, width=0.4, label="false alarms", color="tab:red")
    ax.axhline(TARGET_FALSE_ALARMS, color="tab:green", linestyle="--", linewidth=1,
               label=f"target: ≤ {TARGET_FALSE_ALARMS:g} false alarm / patient-day")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(list(x), names)
    ax.set_ylabel("per patient-day")
    ax.legend(fontsize=8)
    ax.set_title(f"Alarm burden, {result['patient_days']:g} patient-days", fontsize=10)
    fig.tight_layout()
    paths.append(out / f"{stem}-false-alarms.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


__all__ = ["plots"]


def cgm_plots(results: dict[str, dict[str, Any]], out: Path, stem: str) -> list[Path]:
    """``{stem}-tradeoff.png`` (sens15 against false alarms per patient-day: wardwatch's
    curve over its predictive window, each baseline a point, the targets shaded) and
    ``{stem}-leads.png`` (every event's lead, per detector), one panel per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simulators.cgm import TARGETS

    labels = list(results)
    paths = []
    fig, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 4.4), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        res = results[label]
        curve = res["curve"]
        ax.plot([p["false_alarms_per_patient_day"] for p in curve],
                [p["sens15"] for p in curve], "-o", color="tab:blue", label="wardwatch")
        for p in curve:
            ax.annotate(f"{p['window_min']:g}", (p["false_alarms_per_patient_day"],
                        p["sens15"]), textcoords="offset points", xytext=(4, -10), fontsize=7)
        ww = res["detectors"]["wardwatch"]
        ax.plot(ww["false_alarms_per_patient_day"], ww["sens15"], "*", ms=14,
                color="tab:blue", label="wardwatch (default)")
        for j, (name, d) in enumerate(res["detectors"].items()):
            if name == "wardwatch":
                continue
            ax.plot(d["false_alarms_per_patient_day"], d["sens15"], "sD^vP"[j % 5], ms=8,
                    label=name)
        ax.axhspan(TARGETS["sens15"], 1.0, xmin=0, color="tab:green", alpha=0.08)
        ax.axvline(TARGETS["false_alarms_per_patient_day"], color="tab:green", lw=0.8,
                   ls="--")
        ax.set_xlabel("false alarms per patient-day")
        ax.set_ylabel("sens15 (share of events warned ≥ 15 min ahead)")
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, 1)
        ax.set_xlim(left=0)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / f"{stem}-tradeoff.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)

    fig, axes = plt.subplots(1, len(labels), figsize=(5.2 * len(labels), 4.0), squeeze=False)
    for ax, label in zip(axes[0], labels, strict=True):
        det = results[label]["detectors"]
        names = list(det)
        data = [[x for x in det[n]["leads_min"] if x is not None] for n in names]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=30, fontsize=8)
        ax.axhline(15, color="tab:green", lw=0.8, ls="--")
        ax.set_ylabel("lead before onset (min)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = out / f"{stem}-leads.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths

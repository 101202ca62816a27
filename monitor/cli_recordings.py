"""``wardwatch`` commands on recordings: ``simulate``, ``replay``, ``evaluate`` and ``score``.

Split from :mod:`monitor.cli`, which parses the command line and runs the daemon, the
bridge and the demo. These need the ``[replay]`` / ``[eval]`` extras, loaded on use.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from monitor.errors import WardwatchError


def _mix(text: str | None) -> dict[str, float] | None:
    from simulators.patients import parse_mix

    try:
        return parse_mix(text)
    except ValueError as exc:
        print(f"wardwatch: --scenario-mix: {exc}", file=sys.stderr)
        return None


def simulate(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    from rich.progress import track

    from simulators.patients import cohort

    mix = _mix(args.scenario_mix)
    if mix is None:
        return 2
    if args.broker:
        from simulators.publish import patient_rows

        rows = patient_rows(cohort(args.patients, seed=args.seed, days=args.days, mix=mix))
        return _publish(args.broker, rows, args.speed, retime=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with (open(out / "streams.csv", "w", newline="") as fs,
          open(out / "events.csv", "w", newline="") as fe,
          open(out / "artifacts.csv", "w", newline="") as fa):
        streams, events, artifacts = csv.writer(fs), csv.writer(fe), csv.writer(fa)
        streams.writerow(["patient", "ward", "bed", "metric", "timestamp", "value"])
        events.writerow(["patient", "kind", "onset", "crossing", "end", "severity", "visible"])
        artifacts.writerow(["patient", "kind", "metric", "start", "end"])
        patients = cohort(args.patients, seed=args.seed, days=args.days, mix=mix)
        for p in track(patients, total=args.patients, description="simulating",
                       console=_stderr_console()):
            for metric, (t, v) in p.streams.items():
                streams.writerows((p.id, p.ward, p.bed, metric, f"{tt:.3f}", f"{vv:g}")
                                  for tt, vv in zip(t.tolist(), v.tolist(), strict=True))
            events.writerows((e.patient, e.kind, e.onset, e.crossing, e.end, e.severity, e.visible)
                             for e in p.events)
            artifacts.writerows((a.patient, a.kind, a.metric, a.start, a.end)
                                for a in p.artifacts)
    print(f"{args.patients} patients written to {out}", file=sys.stderr)
    return 0


def replay(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulators.publish import csv_rows, is_wfdb, wfdb_rows

    path = Path(args.file)
    try:
        if is_wfdb(path):
            rows, ignored = wfdb_rows(path, ward=args.ward, bed=args.bed,
                                      dated=args.keep_times)
            if ignored:
                print(f"wardwatch: not replayed (no metric of ours): {', '.join(ignored)}",
                      file=sys.stderr)
        else:
            rows = csv_rows(path)
    except (OSError, ValueError) as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    return _publish(args.broker, rows, args.speed, retime=not args.keep_times)


def _publish(url: str, rows: list[Any], speed: float, *, retime: bool) -> int:
    from rich.progress import Progress

    from simulators.publish import messages, publish

    total = sum(1 for _ in messages(rows, retime=False, now=0.0))
    try:
        with Progress(console=_stderr_console()) as progress:
            task = progress.add_task(f"publishing at {speed:g}x" if speed else "publishing",
                                     total=total)
            sent = asyncio.run(publish(url, rows, speed=speed, retime=retime,
                                      progress=lambda: progress.advance(task)))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # aiomqtt.MqttError and connection failures
        print(f"wardwatch: cannot publish to {url}: {exc}", file=sys.stderr)
        return 1
    print(f"published {sent} messages ({len(rows)} observations) to {url}", file=sys.stderr)
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from simulators.evaluate import evaluate, markdown
    from simulators.patients import cohort

    if args.cgm:
        return _evaluate_cgm(args)
    mix = _mix(args.scenario_mix)
    if mix is None:
        return 2
    with Progress(console=_stderr_console()) as progress:
        task = progress.add_task("evaluating", total=args.patients)
        result = evaluate(cohort(args.patients, seed=args.seed, days=args.days, mix=mix),
                          ack_after=args.ack_after, progress=lambda: progress.advance(task))
    result["seed"] = args.seed
    from simulators.report import plots

    return _write_evaluation(args, result, markdown(result),
                             lambda out, stem: plots(result, out, stem))


def _evaluate_cgm(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rich.progress import Progress

    from simulators.cgm import evaluate_recordings, load, markdown

    folder = Path(args.cgm)
    try:
        recs = load(folder, args.cadence)
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    label = folder.name + (f" at {args.cadence / 60:g} min" if args.cadence else "")
    with Progress(console=_stderr_console()) as progress:
        task = progress.add_task("evaluating", total=len(recs))
        result = evaluate_recordings(recs, ack_after=args.ack_after,
                                     progress=lambda: progress.advance(task))
    result["set"] = label
    from simulators.report import cgm_plots

    results = {label: result}
    return _write_evaluation(args, result, markdown(results),
                             lambda out, stem: cgm_plots(results, out, stem))


def _write_evaluation(args: argparse.Namespace, result: dict[str, Any], text: str,
                      plot: Any) -> int:
    """``--json`` and ``--report`` (the Markdown with ``plot(folder, stem)``'s PNGs)."""
    import json
    from pathlib import Path

    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.report:
        report = Path(args.report)
        pngs = plot(report.parent, report.stem)
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in pngs) + "\n"
        report.write_text(text)
    print(text)
    return 0


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def score(args: argparse.Namespace) -> int:
    from pathlib import Path

    from monitor.offline import score_csv

    try:
        s = score_csv(args.metric, Path(args.input), Path(args.output), args.unit,
                      ack_after=args.ack_after)
    except WardwatchError as exc:
        print(f"wardwatch: {exc}", file=sys.stderr)
        return 2
    print(f"scored {s.rows} rows in {s.seconds:.2f} s: {s.alerts} alarms fired, "
          f"{s.unreadable} unreadable rows", file=sys.stderr)
    return 0

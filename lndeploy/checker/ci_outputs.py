"""What a CI job shows of a check run: JUnit XML, a Markdown summary, GitHub Actions annotations.

- ``--junit FILE.xml``: one ``<testsuite>`` per model, one ``<testcase>`` per matrix cell and output
  (classname ``MODEL.PRECISION.LN.BACKEND``, name the output), in the JUnit form that CI test tabs
  read (Jenkins' and GitLab's importers, junitparser, GitHub test-report actions): ``<failure>`` for a
  parity failure, ``<error>`` for a model fault or internal error, ``<skipped>`` for a cell that cannot
  run here. A cell that ended before comparing anything is one case named ``check``.
- ``--summary FILE.md``: a table of cells (status, worst output and error, limit, time), also appended
  to ``$GITHUB_STEP_SUMMARY`` when that is set (the job page shows it).
- ``::error file=...,line=...::`` lines on stdout under GitHub Actions (``GITHUB_ACTIONS=true``), at
  the model file's line of the first diverging layer when the check localised it, else the model file.

All files are written atomically (``lndeploy.fileio``). docs/ci.md shows them in a workflow.
"""

from __future__ import annotations

import math
import os
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

SUITE_NAME = "lndeploy check"
ICONS = {"passed": "✅ passed", "failed": "❌ failed", "error": "💥 error", "skipped": "⏭️ skipped"}


def output_cases(cell) -> list[tuple[str, str | None, str | None]]:
    """``(case name, status or None for passed, message)`` for each JUnit case of ``cell``."""
    result = cell.result
    if result is None or not result.outputs:
        return [("check", None if cell.status == "passed" else cell.status, cell.message or None)]
    cases = []
    for name, stats in result.outputs.items():
        broken = stats.get("error") or stats.get("over_tolerance") or (result.error and not result.passed)
        cases.append((name, "failed" if broken else None, failure_message(cell, name, stats) if broken else None))
    return cases


def failure_message(cell, name: str, stats: dict) -> str:
    """One line: the output, its worst element against the limit, and the diverging layer when known."""
    result = cell.result
    if stats.get("error") or (result.error and not stats.get("over_tolerance")):
        line = f"output {name!r}: {stats.get('error') or result.error}"
    else:
        line = (f"output {name!r}: max abs error {_num(stats['max_abs'], 3)} > limit {_num(cell.limit)}; "
                f"{stats['over_tolerance']} of {stats['elements']} elements over, worst at {stats['worst_index']} "
                f"(sample {stats.get('worst_sample')}): {_num(stats['worst_actual'], 6)} vs PyTorch "
                f"{_num(stats['worst_expected'], 6)}")
    return line + divergence_text(result.first_divergence)


def divergence_text(first) -> str:
    if not first:
        return ""
    where = first.get("module") or first.get("node")
    source = f" at {first['source']}" if first.get("source") else ""
    return (f"; first diverging layer {where!r} (node {first.get('node')!r}){source}, max abs "
            f"{_num(first.get('max_abs'))} (its input {_num(first.get('input_max_abs'))})")


def junit_tree(run) -> ET.ElementTree:
    root = ET.Element("testsuites", name=SUITE_NAME)
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for model in dict.fromkeys(c.model for c in run.cells):
        cells = [c for c in run.cells if c.model == model]
        suite = ET.SubElement(root, "testsuite", name=model, hostname=socket.gethostname(), timestamp=_now())
        counts = dict.fromkeys(totals, 0)
        for cell in cells:
            cases = output_cases(cell)
            for name, status, message in cases:
                case = ET.SubElement(suite, "testcase", classname=cell.id, name=name,
                                     time=f"{cell.seconds / len(cases):.3f}")
                counts["tests"] += 1
                if status is not None:
                    tag, key = {"failed": ("failure", "failures"), "error": ("error", "errors"),
                                "skipped": ("skipped", "skipped")}[status]
                    counts[key] += 1
                    element = ET.SubElement(case, tag, message=message or status)
                    if tag != "skipped":
                        element.set("type", "ParityError" if tag == "failure" else f"exit {cell.exit_code}")
                        element.text = _details(cell)
        for key, value in counts.items():
            suite.set(key, str(value))
            totals[key] += value
        suite.set("time", f"{sum(c.seconds for c in cells):.3f}")
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{run.seconds:.3f}")
    ET.indent(root)
    return ET.ElementTree(root)


def _details(cell) -> str:
    lines = [f"{cell.id}: {cell.message}"]
    if cell.result is not None:
        lines += [f"note: {note}" for note in cell.result.notes]
    lines.append(f"model file: {cell.path}")
    return "\n".join(lines)


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def write_junit(target, run) -> None:
    from lndeploy.fileio import write_bytes_atomic

    data = ET.tostring(junit_tree(run).getroot(), encoding="utf-8", xml_declaration=True)
    write_bytes_atomic(target, data + b"\n")


def summary_markdown(run, title: str | None = None) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in run.counts().items() if n)
    lines = [f"### {title or 'lndeploy parity: ' + run.config}", "",
             f"**{len(run.cells)} cells: {counts}** · exit {run.exit_code} · {run.seconds:.1f} s", "",
             "| model | precision | LN | backend | status | worst output | max abs error | limit | check (s) "
             "| export (s) |",
             "|---|---|---|---|---|---|---:|---:|---:|---:|"]
    for cell in run.cells:
        name, stats = cell.worst or ("-", {})
        lines.append(f"| {cell.model} | {cell.precision or '(artifact)'} | {cell.ln or '(artifact)'} | {cell.backend} "
                     f"| {ICONS[cell.status]} | {_md(name)} | {_num(stats.get('max_abs'))} | {_num(cell.limit)} "
                     f"| {cell.seconds:.1f} | {cell.export_seconds:.1f} |")
    troubled = [c for c in run.cells if c.status != "passed"]
    if troubled:
        lines += ["", "<details><summary>what failed or was skipped</summary>", ""]
        lines += [f"- `{c.id}` ({c.status}): {_md(c.message)}" for c in troubled]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def write_summary(target, run) -> None:
    """``target`` (may be None) and, when set, ``$GITHUB_STEP_SUMMARY`` (appended to, as GitHub expects)."""
    from lndeploy.fileio import write_bytes_atomic

    text = summary_markdown(run)
    if target is not None:
        write_bytes_atomic(target, text.encode())
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        append_atomic(step_summary, text)


def append_atomic(target, text: str) -> None:
    """Append by writing old + new beside the file and renaming: a reader never sees half a table."""
    from lndeploy.fileio import write_bytes_atomic

    path = Path(target)
    old = path.read_bytes() if path.is_file() else b""
    separator = b"\n" if old and not old.endswith(b"\n") else b""
    write_bytes_atomic(path, old + separator + text.encode())


def annotations(run, workspace: str | None = None) -> list[str]:
    """GitHub Actions workflow commands for each failed or broken cell."""
    workspace = workspace or os.environ.get("GITHUB_WORKSPACE") or os.getcwd()
    lines = []
    for cell in run.cells:
        if cell.status not in ("failed", "error"):
            continue
        first = cell.result.first_divergence if cell.result is not None else None
        file, line = _source(first, cell.path, workspace)
        where = f"file={_property(_relative(file, workspace))}" + (f",line={line}" if line else "")
        title = _property(f"lndeploy check {cell.id}")
        lines.append(f"::error {where},title={title}::{_data(cell.message)}")
    return lines


def _source(first, model_path: str, workspace: str) -> tuple[str, int | None]:
    """``first_divergence.source`` (``file:line``) when the check localised it to a file of the
    repository, else the model file: a layer of ``nn.Sequential`` is traced to torch's own
    container.py, which no annotation on the job page can point at."""
    source = (first or {}).get("source")
    if source:
        file, _, line = source.rpartition(":")
        inside = not _relative(file, workspace).startswith(("..", "/")) and "site-packages" not in file
        if file and line.isdigit() and inside:
            return file, int(line)
    from lndeploy.modelfile import split_reference

    return split_reference(model_path)[0], None


def _relative(file: str, workspace: str) -> str:
    try:
        relative = os.path.relpath(os.path.abspath(file), os.path.abspath(workspace))
    except ValueError:
        return file
    return file if relative.startswith("..") else relative


def _data(text: str) -> str:
    # GitHub's workflow-command escaping (docs/ci.md "Annotations")
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a" if value is None else str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def progress_line(cell) -> str:
    """The console line of a finished cell (``check --config``)."""
    name, stats = cell.worst or ("-", {})
    line = f"{cell.status.upper():7} {cell.id}  {cell.seconds:.1f} s"
    if stats:
        line += f"  worst {name!r} max abs {_num(stats.get('max_abs'))} (limit {_num(cell.limit)})"
    if cell.status != "passed":
        line += f"\n        {cell.message}"
    return line


def write_all(run, junit=None, summary=None) -> list[str]:
    """Write the JUnit and Markdown files asked for; returns the lines to print (annotations under
    GitHub Actions, then what was written)."""
    if junit is not None:
        write_junit(junit, run)
    if summary is not None or os.environ.get("GITHUB_STEP_SUMMARY"):
        write_summary(summary, run)
    lines = annotations(run) if os.environ.get("GITHUB_ACTIONS") == "true" else []
    return lines + [f"wrote {path}" for path in (junit, summary) if path is not None]


def finish(run, junit, summary, report, echo) -> int:
    """The end of ``check --config``: the run's JSON report, JUnit, summary, annotations; its exit code."""
    from lndeploy.checker import report as reports

    if report is not None:
        reports.write(report, run.to_report())
    for line in write_all(run, junit, summary):
        echo(line)
    echo(run.summary())
    return run.exit_code

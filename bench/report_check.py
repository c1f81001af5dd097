"""`python -m bench report --check`: rebuild the report from its records and compare with the committed files."""

from __future__ import annotations

import difflib
import json
import re
import tempfile
from pathlib import Path

from bench.report import build_report
from bench.report_figures import FIGURES_DIR
from bench.store import RunDir

TEXT_FILES = ("README.md", "results.csv", "results.json", "report.html")
_DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


def report_sources(results_dir: Path) -> tuple[RunDir, tuple[RunDir, ...], dict]:
    """Return the main run, the claim runs and the whole sources entry recorded in results_dir/results.json."""
    path = Path(results_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found, so it is unknown which run the tables came from; pass RUN_DIR, or build the "
            "report first with `python -m bench report RUN_DIR`"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        main = RunDir(Path(results_dir) / document["run_dir"])
        claims = tuple(RunDir(Path(results_dir) / claim) for claim in document.get("claim_run_dirs", []))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path} has no readable run_dir entry ({error}); rebuild it with `python -m bench report RUN_DIR`") from None
    return main, claims, document


def check_report(results_dir: Path, run_dir: RunDir | None = None, claim_runs: tuple[RunDir, ...] = ()) -> list[str]:
    """Rebuild the report in a scratch directory and list every difference from the files in `results_dir`."""
    results_dir = Path(results_dir)
    committed_matplotlib = None
    if (results_dir / "results.json").exists():
        recorded_main, recorded_claims, document = report_sources(results_dir)
        committed_matplotlib = document.get("matplotlib_version")
        if run_dir is None:
            run_dir, claim_runs = recorded_main, recorded_claims
    if run_dir is None:
        report_sources(results_dir)  # raises FileNotFoundError with the fix

    with tempfile.TemporaryDirectory(prefix="twinbench-report-check-") as scratch:
        fresh = Path(scratch)
        build_report(run_dir, fresh, claim_runs, relative_to=results_dir)
        import matplotlib

        same_matplotlib = committed_matplotlib == matplotlib.__version__
        differences = []
        for name in TEXT_FILES:
            differences += _compare_text(results_dir / name, fresh / name, same_matplotlib)
        differences += _compare_figures(results_dir / FIGURES_DIR, fresh / FIGURES_DIR, same_matplotlib)
    return differences


def _normalize(name: str, text: str, same_matplotlib: bool) -> str:
    """Drop what legitimately differs under another matplotlib version: its name and the PNG bytes."""
    if same_matplotlib:
        return text
    if name == "results.json":
        document = json.loads(text)
        document.pop("matplotlib_version", None)
        return json.dumps(document, indent=1)
    if name == "report.html":
        return _DATA_URI.sub("data:image/png;base64,...", text)
    return text


def _compare_text(committed: Path, fresh: Path, same_matplotlib: bool) -> list[str]:
    if not committed.exists():
        return [f"{committed}: missing; `python -m bench report` writes it"]
    old = _normalize(committed.name, committed.read_text(encoding="utf-8"), same_matplotlib)
    new = _normalize(fresh.name, fresh.read_text(encoding="utf-8"), same_matplotlib)
    if old == new:
        return []
    diff = list(
        difflib.unified_diff(
            old.splitlines(), new.splitlines(), f"{committed} (committed)", f"{committed.name} (rebuilt)", n=0, lineterm=""
        )
    )
    changed = sum(1 for line in diff if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))
    shown = "\n".join(line[:200] for line in diff[:12])
    return [f"{committed}: {changed} line(s) differ from the rebuilt report:\n{shown}"]


def _compare_figures(committed: Path, fresh: Path, same_matplotlib: bool) -> list[str]:
    old = {path.name: path for path in committed.glob("*.png")} if committed.is_dir() else {}
    new = {path.name: path for path in fresh.glob("*.png")}
    differences = [f"{committed / name}: missing; `python -m bench report` draws it" for name in sorted(set(new) - set(old))]
    differences += [f"{committed / name}: not drawn from these records (stale)" for name in sorted(set(old) - set(new))]
    if same_matplotlib:
        for name in sorted(set(old) & set(new)):
            if old[name].read_bytes() != new[name].read_bytes():
                differences.append(f"{committed / name}: differs from the figure drawn from the records")
    return differences

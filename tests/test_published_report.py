"""The committed tables, figures and page in results/ are exactly what their committed records produce."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.report_check import check_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def test_report_check_passes_on_published_results():
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "report", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "matches its records" in completed.stderr


def test_report_check_finds_edited_table(tmp_path):
    copy = tmp_path / "results"
    (copy / "runs").mkdir(parents=True)
    document = json.loads((RESULTS / "results.json").read_text())
    for relative in [document["run_dir"], *document["claim_run_dirs"]]:
        run_dir = RESULTS / relative
        shutil.copytree(run_dir, copy / "runs" / run_dir.name, ignore=shutil.ignore_patterns("artifacts", "cache"))
    for name in ("README.md", "results.csv", "results.json", "report.html"):
        (copy / name).write_bytes((RESULTS / name).read_bytes())
    (copy / "figures").mkdir()
    for figure in (RESULTS / "figures").glob("*.png"):
        (copy / "figures" / figure.name).write_bytes(figure.read_bytes())
    assert check_report(copy) == []

    readme = copy / "README.md"
    readme.write_text(readme.read_text().replace("| baseline | torch |", "| baseline | torch (edited) |", 1))
    (copy / "figures" / "accuracy_vs_size.png").unlink()
    differences = check_report(copy)
    assert len(differences) == 2
    assert str(readme) in differences[0]
    assert "(edited)" in differences[0]
    assert "accuracy_vs_size.png: missing" in differences[1]

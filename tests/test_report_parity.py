"""The report's Parity section, built from a run directory's parity.json."""

import json

from bench.report_parity import PARITY_FILE, parity_section


def test_missing_file_of_a_no_parity_run(tmp_path):
    text = "\n".join(parity_section(tmp_path, "python -m bench all --no-parity"))
    assert "it ran with --no-parity" in text


def test_missing_file_older_run(tmp_path):
    text = "\n".join(parity_section(tmp_path, "python -m bench all"))
    assert "--no-parity" not in text
    assert f"its directory has no {PARITY_FILE}" in text
    assert "`python -m bench parity` checks it" in text


def test_stored_report_gives_verdict_and_differences(tmp_path):
    report = {
        "model": "lenet5",
        "fingerprint": "981c3890975c",
        "seed": 0,
        "batch_size": 32,
        "tolerances": {"logits_across_frameworks": 1e-05, "trained_weights_across_frameworks": 1e-05},
        "frameworks": {"torch": {"parameters": 61706, "weights_round_trip_exact": True}},
        "comparisons": [{"frameworks": ["torch", "tf"], "logits_max_abs_diff": 2.5e-07, "pruning_masks_equal": True}],
        "problems": [],
        "passed": True,
    }
    (tmp_path / PARITY_FILE).write_text(json.dumps(report))
    lines = parity_section(tmp_path, "python -m bench all")
    text = "\n".join(lines)
    assert "batch of 32 images: passed" in text
    assert "| torch | 61,706 | exact |" in text
    assert "| logits, same canonical weights and batch | 2.5e-07 | 1e-05 |" in lines
    assert "| pruning masks | identical | identical |" in lines


def test_unreadable_file_is_named(tmp_path):
    (tmp_path / PARITY_FILE).write_text("{ not json")
    assert any("parity.json is unreadable" in line for line in parity_section(tmp_path))

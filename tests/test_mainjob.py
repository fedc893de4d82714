"""``maevae run`` end to end, on the tiny preset (the real main job is timed in the README)."""

import json

import pytest

from maevae import digits_comparison as mainjob
from maevae.errors import MaevaeError


def test_main_job_writes_a_side_by_side_report(tmp_path, monkeypatch):
    monkeypatch.setattr(mainjob, "PRESETS", {"VLAE": "tiny/test", "MAE": "tiny/test"})
    out = mainjob.main_job(str(tmp_path / "main"), "cpu", progress=False, log=lambda *a: None)
    report = (out / "report.md").read_text()
    assert "| VLAE |" in report and "| MAE |" in report and "K-means" in report
    assert "## Training curves" in report
    for d in ("vlae", "mae"):
        ev = json.loads((out / d / "eval.json").read_text())
        assert {"nll", "kl", "mpd", "clustering", "probes"} <= ev.keys()
        assert (out / d / "samples.png").exists() and (out / d / "reconstructions.png").exists()
        assert f"({d}/samples.png)" in report
        assert (out / d / "training_curves.png").read_bytes()[:4] == b"\x89PNG"
        assert f"({d}/training_curves.png)" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["MAE"]["kl"] == pytest.approx(
        json.loads((out / "mae" / "eval.json").read_text())["kl"])
    with pytest.raises(MaevaeError, match="not empty"):
        mainjob.main_job(str(out), "cpu", progress=False, log=lambda *a: None)

"""The run report: plots and report.html, checked in headless Chromium."""
import re
import shutil
import subprocess

import numpy as np
import pytest

from byol.cli import main
from byol.evaluation.report import read_metrics

PLOTS = ["loss.png", "lr.png", "tau.png", "projection_std.png", "knn.png", "embedding_map.png", "preview.png"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium here (Debian: apt-get install chromium; `make test` installs it when run as root)")


def images_loaded_in_chromium(page) -> str:
    """The page's own count of decoded images after Chromium has loaded it, e.g. '7/7'."""
    dom = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'data-images-loaded="(\d+/\d+)"', dom)
    assert m, f"Chromium did not run the page's load handler; DOM starts: {dom[:300]!r}"
    return m.group(1)


def test_pretraining_writes_the_report(demo_run):
    page = demo_run / "report.html"
    text = page.read_text()
    sources = re.findall(r"<img src='([^']+)'", text)
    assert sorted(sources) == sorted(PLOTS)
    for src in sources:  # every image the page names exists and is a PNG
        assert (demo_run / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "kNN top-1 final" in text and "model.hidden_layer" in text
    assert images_loaded_in_chromium(page) == f"{len(PLOTS)}/{len(PLOTS)}"


def test_report_rebuilds_and_chromium_sees_a_missing_image(demo_run, tmp_path):
    run = tmp_path / "copy"
    shutil.copytree(demo_run, run)
    for png in run.glob("*.png"):
        png.unlink()
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    assert all((run / p).exists() for p in PLOTS)
    (run / "tau.png").unlink()  # the check really looks at the images
    assert images_loaded_in_chromium(run / "report.html") == f"{len(PLOTS) - 1}/{len(PLOTS)}"


def test_report_of_a_non_run_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no config.yaml" in capsys.readouterr().err


def test_resumed_logs_are_read_in_order(tmp_path):
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metrics.csv").write_text("epoch,step,train/loss_step\n0,0,4.0\n0,10,3.0\n1,20,2.5\n")
    (tmp_path / "csv-resume1").mkdir()
    (tmp_path / "csv-resume1" / "metrics.csv").write_text("epoch,step,train/loss_step\n1,20,2.4\n1,30,2.0\n")
    assert read_metrics(tmp_path)["train/loss_step"] == [(0, 4.0), (10, 3.0), (20, 2.4), (30, 2.0)]


def test_a_small_labeled_folder_gets_its_report_with_a_note(tmp_path, capsys):
    from byol.cli import main

    from conftest import TINY, write_folder

    data = write_folder(tmp_path / "small", classes=("a", "b"), per_class=12, size=(32, 32))
    out = tmp_path / "run"
    argv = ["pretrain", "--data.path", str(data), "--train.epochs", "1", "--train.knn_every", "1",
            "--train.out_dir", str(out), *TINY]
    argv[argv.index("--train.batch_size") + 1] = "16"
    assert main(argv) == 0
    page = (out / "report.html").read_text()
    assert "Left out: t-SNE map" in page and "at least 4" in page
    assert "kNN accuracy" in page and "id='verdict'" in page
    assert main(["report", str(out)]) == 0


def test_diverged_values_never_reach_a_plot(tmp_path):
    # features of weights near 3e34: their float32 norms overflow, and scikit-learn's t-SNE
    # died of SIGSEGV on the NaN that followed
    from byol.evaluation.report import plot_embedding_map, plot_series

    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    huge = rng.normal(size=(40, 8)).astype(np.float32) * np.float32(3.4e34)
    assert plot_embedding_map(huge, labels, list("abcd"), tmp_path / "map.png").stat().st_size > 0
    for bad in (np.inf, np.nan):
        x = huge.copy()
        x[3, 2] = bad
        with pytest.raises(ValueError, match="inf or NaN"):
            plot_embedding_map(x, labels, list("abcd"), tmp_path / "bad.png")
    assert plot_series([(1, 0.5), (2, float("inf")), (3, 0.4)], "loss", "loss", tmp_path / "s.png").exists()
    with pytest.raises(ValueError, match="every value is inf or NaN"):
        plot_series([(1, float("nan"))], "loss", "loss", tmp_path / "n.png")


def test_a_crash_while_drawing_never_fails_the_run(tmp_path, monkeypatch, capsys):
    # the report is drawn in a process of its own: here that process dies of SIGSEGV
    import sys

    from byol.training.records import draw_report

    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crash.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(crash))
    assert draw_report(tmp_path / "run") is None
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "died of SIGSEGV" in err and f"byol report {tmp_path / 'run'}" in err

"""benchmarks/loader.py runs on a fresh clone: this project's pipelines on a folder of JPEG
photos (the peers' need their own environment and are left out), one row per pipeline and
worker count, with the figures and provenance the benchmarks page reads."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def test_the_loader_benchmark_writes_a_row_per_pipeline_and_worker_count(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(24):
            pixels = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "photos" / c / f"{i}.jpg", quality=90)
    out = tmp_path / "rows.jsonl"
    pipelines = ["decode-pillow", "byol-pillow", "byol-device-pillow", "byol-plain", "byol-cache", "byol-shards"]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "loader.py"), "--photos", str(tmp_path / "photos"),
                           "--images", "32", "--batch", "8", "--workers", "1", "--repeats", "2",
                           "--pipelines", ",".join(pipelines), "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pipeline"] for r in rows] == pipelines
    for r in rows:
        assert r["images_per_s"] > 0 and r["timed_images"] >= 32 and r["workers"] == 1 and r["repeats"] == 2
        assert len(r["images_per_s_runs"]) == 2 and r["images_per_s_sd"] >= 0
        assert r["workers_for_gpu_demand_estimate"] > 0 and r["cpu_kind"] and r["commit"] and "loader.py" in r["command"]
    by_name = {r["pipeline"]: r for r in rows}
    assert by_name["byol-pillow"]["same_work_as"] == "torchvision-bicubic"
    assert any("flips" in d for d in by_name["byol-pillow"]["differences"])  # each difference is named in the row
    assert by_name["byol-cache"]["cache_seconds"] > 0  # the copy's time, kept apart from images/s
    device = by_name["byol-device-pillow"]  # the device's share timed apart, with this CPU as the device, said so
    assert device["device_ms_per_batch"] > 0 and "standing in for the training device" in device["device"]
    assert device["bare_decode"] == "decode-pillow" and device["transfer_bytes_per_image"] >= 300 * 400 * 3 // 2


def test_a_ratio_inside_the_spread_is_no_difference():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from loader import ratio

    a = {"per_worker": 100.0, "images_per_s": 100.0, "images_per_s_sd": 5.0}
    assert ratio(a, {"per_worker": 104.0, "images_per_s": 104.0, "images_per_s_sd": 3.0}).endswith("within the spread)")
    assert ratio(a, {"per_worker": 200.0, "images_per_s": 200.0, "images_per_s_sd": 3.0}) == "0.50x"

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
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "loader.py"), "--photos", str(tmp_path / "photos"),
                           "--images", "32", "--batch", "8", "--workers", "1",
                           "--pipelines", "byol,byol-plain,byol-cache,byol-shards", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pipeline"] for r in rows] == ["byol", "byol-plain", "byol-cache", "byol-shards"]
    for r in rows:
        assert r["images_per_s"] > 0 and r["timed_images"] >= 32 and r["workers"] == 1
        assert r["workers_for_one_gpu"] > 0 and r["cpu_kind"] and r["commit"] and "loader.py" in r["command"]

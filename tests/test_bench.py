"""The benchmark scripts in benchmarks/ (outside the package) run and print JSON."""
import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench.py"


def bench():
    spec = importlib.util.spec_from_file_location("bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_throughput_prints_json(capsys):
    assert bench().main(["throughput", "--batch-size", "8", "--width", "0.125", "--steps", "1",
                         "--warmup", "1", "--variants", "default,fp32"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["variant"] for r in lines] == ["default", "fp32"]
    assert all(r["images_per_sec"] > 0 and r["peak_memory_mb"] > 0 for r in lines)


def test_bench_b3_tiny_on_cpu(cifar_dir, tmp_path, capsys):
    assert bench().main(["b3", "--epochs", "1", "--cifar", str(cifar_dir), "--out", str(tmp_path / "b3"),
                         "--data.limit_per_class", "20", "--train.batch_size", "64", "--log.progress", "false",
                         "--model.backbone_args", "{stem: cifar, width: 0.125}", "--model.projection_hidden_dim", "64",
                         "--model.prediction_hidden_dim", "64"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["benchmark"] == "B3" and r["train_images"] == 200 and r["epochs"] == 1
    assert 0 <= r["knn_top1"] <= 1 and 0 <= r["linear_top1"] <= 1 and r["seconds_per_epoch"] > 0


def test_bench_without_cifar_says_what_to_pass(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("BYOL_CIFAR10_DIR", raising=False)
    assert bench().main(["b2", "--out", str(tmp_path / "b2")]) == 2
    assert "--cifar DIR" in capsys.readouterr().err

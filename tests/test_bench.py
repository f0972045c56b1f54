"""The benchmark scripts in benchmarks/ (outside the package) run and print JSON."""
import importlib.util
import json
from pathlib import Path

import pytest

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
    for r in lines:  # the step's share of this machine's matrix-multiply rate, in the precision it ran
        assert r["matmul_gflops"] > 0 and r["step_gflop"] > 0 and r["cpu_kind"]
        # the share is rounded to 3 decimals, the other figures to 1 or 2: compare within those roundings
        rate = r["step_gflop"] * r["images_per_sec"] / r["batch"]
        assert r["share_of_matmul_rate"] == pytest.approx(rate / r["matmul_gflops"], rel=0.02, abs=6e-4)
        assert r["achieved_gflops"] == pytest.approx(rate, rel=0.02, abs=0.06)


def test_a_step_counts_the_operations_of_both_views_and_the_target():
    # resnet18-cifar: 0.56 G multiply-adds per 32-px image forward; a step is 3 passes (forward and
    # backward, x2) for the online network and 1 for the target, on each of the 2 views: about 8.9 GFLOP
    r = bench().run_variant("fp32", 2, 1.0, 1, 0, "cpu")
    assert r["step_gflop"] / 2 == pytest.approx(8.9, rel=0.05)


def test_bench_b3_tiny_on_cpu(small_cifar, tmp_path, capsys):
    assert bench().main(["b3", "--epochs", "1", "--cifar", str(small_cifar), "--out", str(tmp_path / "b3"),
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


COMPARE = BENCH.parent / "compare.py"


def compare():
    import sys

    sys.path.insert(0, str(BENCH.parent))  # compare.py imports bench.py beside it
    spec = importlib.util.spec_from_file_location("compare", COMPARE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compare_chooses_on_held_out_training_images_never_the_test_set(cifar_dir):
    c = compare()
    train, val = c.load_images(str(cifar_dir), 20, "val")
    assert len(train) == 200 and len(val) == 10 * c.VAL_PER_CLASS
    assert not set(map(bytes, train.images.flatten(1).numpy())) & set(map(bytes, val.images.flatten(1).numpy()))
    _, test = c.load_images(str(cifar_dir), 20, "test")
    assert len(test) == 10000


def test_compare_summary_means_gains_and_time_ratios():
    rows = [{"library": "untrained", "seed": s, "knn_top1_own_norm": 20.0, "knn_top1_imagenet_norm": 21.0,
             "pretrain_seconds": 0.0} for s in (1, 2)]
    rows += [{"library": "byol", "seed": 1, "knn_top1": 30.0, "pretrain_seconds": 100.0, "precision": "32-true"},
             {"library": "byol", "seed": 2, "knn_top1": 32.0, "pretrain_seconds": 110.0, "precision": "32-true"},
             {"library": "lightly", "seed": 1, "knn_top1": 27.0, "pretrain_seconds": 300.0, "precision": "32-true"},
             {"library": "lightly", "seed": 2, "error": ["boom"]}]
    byol, lightly = compare().summarize(rows)
    assert byol["knn_top1_mean"] == 31.0 and byol["gain_over_untrained_mean"] == 11.0
    assert byol["time_ratio_to_byol"] == 1.0 and byol["seeds"] == [1, 2]
    assert lightly["knn_top1_mean"] == 27.0 and lightly["gain_over_untrained_mean"] == 6.0
    assert lightly["time_ratio_to_byol"] == pytest.approx(2.86, abs=0.01)


def test_compare_summarizes_saved_rows_of_separate_runs_and_refuses_mixed_ones(tmp_path, capsys):
    def row(seed, library, knn, seconds, **kw):
        return {"benchmark": "B2-compare", "comparison": "defaults", "split": "test", "epochs": 10, "seed": seed,
                "library": library, "knn_top1": knn, "knn_top1_own_norm": 20.0, "knn_top1_imagenet_norm": 20.0,
                "pretrain_seconds": seconds, "commit": f"c{seed}", **kw}

    for seed in (1, 2):
        rows = [row(seed, "untrained", None, 0.0), row(seed, "byol", 30.0 + seed, 100.0)]
        (tmp_path / f"s{seed}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n"
                                                 + json.dumps({"summary": "byol"}) + "\n")
    assert compare().main(["--rows", str(tmp_path / "s1.jsonl"), str(tmp_path / "s2.jsonl")]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["summary"] == "byol" and out["seeds"] == [1, 2] and out["knn_top1_mean"] == 31.5
    assert out["gain_over_untrained_mean"] == 11.5 and out["commit"] == ["c1", "c2"] and out["split"] == "test"
    (tmp_path / "s3.jsonl").write_text(json.dumps(row(3, "byol", 33.0, 100.0, epochs=30)) + "\n")
    with pytest.raises(SystemExit, match="differ in epochs \\(10, 30\\)"):
        compare().main(["--rows", str(tmp_path / "s1.jsonl"), str(tmp_path / "s3.jsonl")])
    with pytest.raises(SystemExit, match="seed 1 byol, seed 1 untrained appear more than once"):
        compare().main(["--rows", str(tmp_path / "s1.jsonl"), str(tmp_path / "s1.jsonl")])
    (tmp_path / "gpu.jsonl").write_text(json.dumps(row(3, "lightly", 33.0, 50.0, device="NVIDIA H200")) + "\n")
    with pytest.raises(SystemExit, match="differ in device"):  # one library on a GPU, the others on the CPU
        compare().main(["--rows", str(tmp_path / "s1.jsonl"), str(tmp_path / "gpu.jsonl")])
    equal = [row(1, "byol", 31.0, 100.0, comparison="fp32", precision="32-true"),
             row(1, "lightly", 30.0, 90.0, comparison="fp32", precision="bf16-mixed")]
    (tmp_path / "fp32.jsonl").write_text("\n".join(json.dumps(r) for r in equal) + "\n")
    with pytest.raises(SystemExit, match="fp32 comparison holds rows of several precisions"):
        compare().main(["--rows", str(tmp_path / "fp32.jsonl")])
    with pytest.raises(SystemExit):  # a test figure beside the test figure: refused, not silently ignored
        compare().main(["--cifar", str(tmp_path), "--split", "test", "--test-too"])
    assert "--test-too goes with --split val" in capsys.readouterr().err


def test_compare_runs_this_project_and_the_untrained_network_on_two_seeds(small_cifar, capsys):
    assert compare().main(["--cifar", str(small_cifar), "--libraries", "untrained,byol", "--epochs", "1",
                           "--per-class", "30", "--seeds", "3,4", "--width", "0.125", "--batch-size", "64",
                           "--comparison", "fp32", "--set", "model.projection_hidden_dim=64",
                           "--set", "model.prediction_hidden_dim=64", "--curve", "--label", "small", "--test-too"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    runs, summary = lines[:4], lines[4:]
    assert [(r["seed"], r["library"]) for r in runs] == [(3, "untrained"), (3, "byol"), (4, "untrained"), (4, "byol")]
    assert all("error" not in r and r["split"] == "val" and r["query_images"] == 300 for r in runs)
    assert runs[1]["precision"] == "32-true" and runs[1]["steps"] == 4 and runs[1]["cpu_kind"]
    assert summary[0]["summary"] == "byol" and summary[0]["seeds"] == [3, 4]
    curve = runs[1]["curve"]  # --curve: kNN after every epoch; the last is the run's own figure
    assert [p[0] for p in curve] == [1] and curve[-1][2] == runs[1]["knn_top1"] and runs[1]["label"] == "small"
    assert 0 < curve[-1][1] <= runs[1]["pretrain_seconds"] + 0.1 and runs[1]["curve_eval_seconds"] > 0
    # --test-too: the same final network on the 10,000 test images, beside the validation figure
    tests = [runs[1]["knn_top1_test"], runs[3]["knn_top1_test"]]
    assert all(0 < t <= 100 for t in tests) and "knn_top1_test" not in runs[0]
    assert summary[0]["knn_top1_test_each"] == tests and summary[0]["knn_top1_test_mean"] == round(sum(tests) / 2, 2)


def time_to_accuracy():
    import sys

    sys.path.insert(0, str(BENCH.parent))  # it reads rows with compare.py's reader, beside it
    spec = importlib.util.spec_from_file_location("time_to_accuracy", BENCH.parent / "time_to_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_time_to_accuracy_times_every_library_by_its_own_first_crossing(tmp_path, capsys):
    def row(library, seed, curve, label=None):
        r = {"library": library, "seed": seed, "curve": curve, "knn_top1": curve[-1][2], "split": "val",
             "comparison": "fp32", "cpu_kind": "avx2", "precision": "32-true", "commit": "abc", "epochs": len(curve),
             "device": "cpu", "threads": 2}
        return {**r, "label": label} if label else r

    rows = [row("lightly", 0, [[1, 100.0, 20.0], [2, 200.0, 24.0]]),
            row("lightly", 1, [[1, 100.0, 21.0], [2, 220.0, 26.0]]),  # level: (24 + 26) / 2 = 25
            row("byol", 0, [[1, 50.0, 25.0], [2, 100.0, 27.0]], "byol+levers"),
            row("byol", 1, [[1, 50.0, 24.0], [2, 110.0, 25.5]], "byol+levers"),
            row("byol", 0, [[1, 90.0, 22.0], [2, 180.0, 24.5]]),  # never reaches it
            row("byol", 0, [[1, 50.0, 22.0], [2, 100.0, 23.0], [3, 150.0, 26.0]], "byol+levers")]  # another length
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert time_to_accuracy().main(["--at", "2", str(path)]) == 0
    out = {(r["group"], r["epochs"]): r for r in map(json.loads, capsys.readouterr().out.strip().splitlines())}
    assert out["lightly", 2]["level_knn_top1"] == 25.0 and out["lightly", 2]["seconds_to_level"] == [None, 220.0]
    levers = out["byol+levers", 2]
    assert levers["epochs_to_level"] == [1, 2] and levers["seconds_to_level_mean"] == 80.0
    # the reference is timed by its own first crossing of the level (seed 1 at 220 s; seed 0 never
    # reaches the mean of the two), never by the epoch that set the level (seed 0's 200 s)
    assert out["lightly", 2]["reference_seconds_to_level_mean"] == 220.0 and out["lightly", 2]["reached"] == "1 of 2 seeds"
    assert levers["fraction_of_reference_time"] == round(80.0 / 220.0, 3) and levers["seconds_to_level_stdev"] == 42.4
    assert out["byol", 2]["seconds_to_level"] == [None] and out["byol", 2]["seconds_to_level_mean"] is None
    assert out["byol+levers", 3]["seeds"] == [0] and out["byol+levers", 3]["seconds_to_level"] == [150.0]
    with pytest.raises(SystemExit, match="no lightly curve reaches epoch 3"):
        time_to_accuracy().main(["--at", "3", str(path)])
    # the same name, length and seed twice is refused, never averaged as two seeds
    path.write_text("\n".join(json.dumps(r) for r in [*rows, rows[-2]]) + "\n")
    with pytest.raises(SystemExit, match="seed 0 of byol \\(2 epochs\\) twice: give each run its own"):
        time_to_accuracy().main(["--at", "2", str(path)])
    longer = row("lightly", 2, [[1, 100.0, 20.0], [2, 200.0, 24.0], [3, 300.0, 28.0]])
    path.write_text("\n".join(json.dumps(r) for r in [*rows, longer]) + "\n")
    with pytest.raises(SystemExit, match="lightly runs of different lengths \\(2, 2, 3 epochs\\)"):
        time_to_accuracy().main(["--at", "2", str(path)])
    # rows measured on other devices, or in another precision in an equal-precision comparison, are refused
    for change, why in (({"device": "cuda"}, "differ in device"), ({"precision": "bf16-mixed"}, "several precisions")):
        path.write_text("\n".join(json.dumps(r) for r in [*rows[:-1], {**rows[-1], **change}]) + "\n")
        with pytest.raises(SystemExit, match=why):
            time_to_accuracy().main(["--at", "2", str(path)])


def test_time_to_accuracy_without_the_benchmark_environment_says_so_in_one_line(tmp_path, monkeypatch):
    import sys

    module = time_to_accuracy()
    monkeypatch.delitem(sys.modules, "compare", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # what a python without torch does on `import torch`
    with pytest.raises(SystemExit, match="needs compare.py's environment .*torch.*the python that ran compare.py"):
        module.main(["--at", "2", str(tmp_path / "rows.jsonl")])

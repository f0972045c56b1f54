"""The budget advice: each run's first crossing of its untrained kNN, the entries summarised from
quick-start rows, the line said before a run, and the packaged measurements matching the rows."""
import subprocess
import sys
from pathlib import Path

from byol.cli import main
from byol.config import load_config
from byol.training.budget import budget_note as note_of_run, measured
from byol.training.data import build_data
from byol.training.pretrain import plan_run

from conftest import write_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from curves import beat_margin, first_beat, first_crossing, summarize  # noqa: E402  (the rows' aggregation)


def budget_note(cfg, images: int, grayscale: bool = False, entries=None) -> list[str]:
    """The budget line of a one-process run of `cfg` on `images` images."""
    t = cfg.train
    per_epoch = -(-(images // t.batch_size) // t.accumulate)
    return note_of_run(t.epochs, per_epoch, images, cfg.data.image_size, grayscale, entries)


def row(seed, steps, epochs, curve, final=None, data="CIFAR-10 photos", side=32, images=1800, outcome=None):
    final = curve[-1][1] if final is None else final
    return {"data": data, "side": side, "train_images": images, "seed": seed, "steps": steps, "epochs": epochs,
            "curve": curve, "knn_untrained_top1": curve[0][1], "knn_final_top1": final, "held_out_images": 200,
            "outcome": outcome or ("helped" if final - curve[0][1] > 0.1 else "no clear change"),
            "cpu_kind": "cpu", "precision": "fp32", "torch": "2", "commit": "abc"}


def test_a_beat_is_more_than_the_held_out_images_can_tell_from_chance():
    """One image in 200 above the untrained network counted as a beat (30.5 against 30.0 %):
    a point on the way beats it by more than the 95 % interval of the difference on its held-out
    images (about 9 points here), the end by the paired test's verdict."""
    assert abs(beat_margin(0.3, 200) - 1.96 * (2 * 0.3 * 0.7 / 200) ** 0.5) < 1e-12
    assert round(100 * beat_margin(0.3, 200), 1) == 9.0 and beat_margin(0.3, 2000) < beat_margin(0.3, 200)
    curve = [[0, 0.30], [35, 0.305], [70, 0.36], [105, 0.40], [140, 0.35]]
    assert first_beat(curve, 200) == 105  # 0.305 and 0.36 are within chance, 0.40 is not
    assert first_beat(curve, 200_000) == 35  # with 200,000 held-out images even 0.5 points is clear
    assert first_beat([[0, 0.3], [35, 0.33], [84, 0.35]], 200, "helped") == 84  # the paired test at the end
    assert first_beat([[0, 0.3], [35, 0.33], [84, 0.41]], 200, "no clear change") is None  # it rules the end


def test_first_crossing_is_each_curves_own_first_point_at_the_level():
    curve = [[0, 0.30], [35, 0.30], [70, 0.29], [105, 0.31], [140, 0.35]]
    assert first_crossing(curve, 0.35) == [140, 0.35] and first_crossing(curve, 0.35, strictly=True) is None
    assert first_crossing([[0, 0.5]], 0.1) is None  # the start is never a crossing
    timed = [[1, 60.0, 20.0], [2, 121.0, 31.5], [3, 180.0, 31.0], [4, 242.0, 33.0]]  # (epoch, seconds, kNN)
    assert first_crossing(timed, 31.0) == [2, 121.0, 31.5]


def test_summarize_takes_each_runs_own_beat_and_counts_the_seeds_the_paired_test_found_helped():
    rows = [row(1, 350, 50, [[0, .3], [35, .28], [70, .40], [350, .42]]),
            row(2, 350, 50, [[0, .3], [35, .41], [350, .43]]),
            row(3, 350, 50, [[0, .3], [35, .35], [350, .31]]),
            row(1, 84, 12, [[0, .25], [35, .36], [84, .24]]),
            row(1, 84, 12, [[0, .5], [84, .62]], data="demo textures", images=2700)]
    photos, textures = summarize(rows)
    assert photos["data"] == "CIFAR-10 photos" and photos["runs"] == 4
    assert photos["first_beat_steps"] == [70, 35, None, 35]
    assert photos["median_first_beat"] == 35  # median of 35, 35, 70
    assert photos["held_out_images"] == 200 and photos["beat_margin_points"] == 8.9  # at the mean untrained 28.75 %
    assert photos["lengths"] == [{"steps": 84, "epochs": 12, "runs": 1, "ended_helped": 0, "ended_worse": 0},
                                 {"steps": 350, "epochs": 50, "runs": 3, "ended_helped": 2, "ended_worse": 0}]
    assert textures["train_images"] == 2700 and textures["median_first_beat"] == 84


ENTRY = summarize([row(s, 350, 50, [[0, .3], [35, .29], [70, .40], [350, .42]]) for s in (1, 2, 3)])


def test_a_run_shorter_than_similar_data_needed_is_warned_with_the_epochs_that_suffice():
    cfg = load_config(None, ["--data.image_size", "32", "--train.epochs", "5"])
    line, = budget_note(cfg, 2000, entries=ENTRY)  # 2000 // 256 = 7 steps an epoch
    assert line.startswith("budget: 2,000 images x 5 epochs = 35 steps; on similar data (1,800 CIFAR-10 photos at 32 px)")
    assert "beat the untrained network (by more than the 9 points its 200 held-out images can tell from chance" in line
    assert "in 3 of 3 runs, first after about 70 steps" in line and "helped by the paired test on 3 of 3 seeds" in line
    assert line.endswith("This run is shorter: expect no clear gain; train.epochs 10 gives 70 steps")


def test_a_run_long_enough_is_told_the_measurement_without_a_warning():
    cfg = load_config(None, ["--data.image_size", "32", "--train.epochs", "50"])
    line, = budget_note(cfg, 2000, entries=ENTRY)
    assert "= 350 steps" in line and "after about 70 steps" in line and "shorter" not in line


def test_grayscale_data_is_told_the_measurement_of_grayscale_data_and_colour_of_colour():
    """A run is told measured data of its own kind (grayscale or colour) or of a kind no row
    states, never of the other kind: the nearest in images, then in side, then its own kind."""
    def kind(data, side, grayscale, needed):
        rows = [{**row(s, 350, 50, [[0, .3], [needed, .45], [350, .45]], data=data, side=side), "grayscale": grayscale}
                for s in (1, 2)]
        return summarize(rows)[0]

    digits, photos = kind("rendered digits", 28, True, 140), kind("CIFAR-10 photos", 32, False, 70)
    unsaid = {**photos, "grayscale": None, "data": "unlabelled photos"}
    assert digits["grayscale"] is True and photos["grayscale"] is False
    cfg = load_config(None, ["--data.image_size", "28", "--train.epochs", "50"])
    assert "(1,800 rendered digits at 28 px)" in budget_note(cfg, 2000, True, entries=[photos, digits])[0]
    assert "(1,800 CIFAR-10 photos at 32 px)" in budget_note(cfg, 2000, False, entries=[digits, photos])[0]
    assert "(1,800 unlabelled photos at 32 px)" in budget_note(cfg, 2000, False, entries=[digits, unsaid])[0]
    assert "more images or more epochs" in budget_note(cfg, 2000, False, entries=[digits])[0]  # never the other kind
    many = {**photos, "train_images": 9000}  # colour, but further in images than the unsaid 1,800
    assert "(1,800 unlabelled photos at 32 px)" in budget_note(cfg, 2000, False, entries=[many, unsaid])[0]
    assert "(1,800 CIFAR-10 photos at 32 px)" in budget_note(cfg, 2000, False, entries=[unsaid, photos])[0]


def test_similar_data_that_never_beat_the_untrained_network_is_said_so():
    never = summarize([{**row(s, 84, 12, [[0, .3], [35, .2], [84, .25]], data="rendered digits", side=28),
                        "grayscale": True} for s in (1, 2)])
    cfg = load_config(None, ["--data.image_size", "28", "--train.epochs", "12"])
    line, = budget_note(cfg, 1800, True, entries=never)
    assert "(1,800 rendered digits at 28 px) BYOL beat the untrained network" in line and "in 0 of 2 runs of up to 84 steps" in line
    assert line.endswith("expect no clear gain from a run this short")
    longer, = budget_note(load_config(None, ["--data.image_size", "28", "--train.epochs", "50"]), 1800, True, entries=never)
    assert "longer than any measured" in longer


def test_similar_data_that_pretraining_made_worse_is_said_so():
    """A run is told how many measured runs of similar data its paired test found worse than the
    untrained network (the row's outcome), by run length, and warned of it when it is no longer."""
    def digits(seed, steps, epochs, outcome, curve):
        return {**row(seed, steps, epochs, curve, data="rendered digits", side=28), "grayscale": True, "outcome": outcome}

    never = summarize([digits(1, 84, 12, "got worse", [[0, .3], [35, .2], [84, .2]]),
                       digits(2, 84, 12, "no clear change", [[0, .3], [35, .25], [84, .28]]),
                       digits(3, 350, 50, "got worse", [[0, .3], [350, .2]])])
    assert never[0]["lengths"] == [{"steps": 84, "epochs": 12, "runs": 2, "ended_helped": 0, "ended_worse": 1},
                                   {"steps": 350, "epochs": 50, "runs": 1, "ended_helped": 0, "ended_worse": 1}]
    line, = budget_note(load_config(None, ["--data.image_size", "28", "--train.epochs", "12"]), 1800, True, entries=never)
    assert line.endswith("in 0 of 3 runs of up to 350 steps, and ended worse than it by the paired test in 2: "
                         "expect no clear gain from a run this short, and features that may be worse")
    crossed = summarize([digits(1, 350, 50, "got worse", [[0, .3], [35, .41], [350, .2]]),
                         digits(2, 350, 50, "helped", [[0, .3], [35, .4], [350, .4]])])
    line, = budget_note(load_config(None, ["--data.image_size", "28", "--train.epochs", "50"]), 1800, True, entries=crossed)
    assert "runs of 350 steps helped by the paired test on 1 of 2 seeds and were worse on 1" in line


def test_data_unlike_any_measured_gets_the_general_line_or_none():
    small = load_config(None, ["--data.image_size", "32", "--train.epochs", "5"])
    large = load_config(None, ["--data.image_size", "160", "--train.epochs", "5"])
    assert "more images or more epochs" in budget_note(large, 2000, entries=ENTRY)[0]  # another size class
    assert "more images or more epochs" in budget_note(small, 300, entries=ENTRY)[0]  # 6x fewer images
    assert budget_note(small, 50_000, entries=ENTRY) == []  # many images, nothing measured near
    assert budget_note(load_config(None, ["--train.epochs", "0"]), 2000, entries=ENTRY) == []


def test_print_config_says_the_budget_line_with_the_plan(tmp_path, capsys):
    data = write_folder(tmp_path / "imgs", classes=("a", "b"), per_class=150, size=(32, 32))
    assert main(["pretrain", "--data.path", str(data), "--train.epochs", "2", "--print-config"]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "train.batch_size 256 -> 64" in text  # no batch set: one the 270 images fill 4 times
    assert "budget: 270 images x 2 epochs = 8 steps" in text  # 10 % of each class held out


def test_the_packaged_measurements_and_the_pages_tables_are_what_the_committed_rows_give():
    rows = ROOT / "benchmarks" / "results" / "quickstart.jsonl"
    assert rows.exists() and measured(), "the quick-start rows and the package's budget.json are committed"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_side_by_side_times_every_library_by_its_own_first_crossing(tmp_path, monkeypatch):
    """The benchmarks page's side-by-side: one summary function for every library, lightly's
    final kNN as the level, each library's time its own first crossing (lightly's too: epoch 2
    here, not its last), the untrained network's gain, and the plot drawn from the same rows."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import results

    common = {"comparison": "defaults", "split": "test", "epochs": 3, "train_images": 5000, "backbone": "resnet18-cifar@0.25",
              "batch": 256, "cpu_kind": "AVX2", "device": "cpu", "threads": 2, "commit": "abc1234", "seed": 7,
              "command": "python benchmarks/compare.py --curve"}
    rows = [{**common, "library": "untrained", "pretrain_seconds": 0.0, "knn_top1_own_norm": 27.0,
             "knn_top1_imagenet_norm": 26.0},
            {**common, "library": "byol", "precision": "bf16-mixed", "pretrain_seconds": 90.0, "knn_top1": 33.0,
             "curve": [[1, 30.0, 31.5], [2, 60.0, 32.0], [3, 90.0, 33.0]]},
            {**common, "library": "lightly", "precision": "32-true", "pretrain_seconds": 300.0, "knn_top1": 31.0,
             "curve": [[1, 100.0, 29.0], [2, 200.0, 31.2], [3, 300.0, 31.0]]},
            {**common, "library": "byol-pytorch", "precision": "32-true", "pretrain_seconds": 270.0, "knn_top1": 30.0}]
    table = results.compare_tables(rows)
    assert "time to 31.0 %" in table
    byol_line = next(line for line in table.splitlines() if line.startswith("| byol |"))
    lightly_line = next(line for line in table.splitlines() if line.startswith("| lightly |"))
    peer_line = next(line for line in table.splitlines() if line.startswith("| byol-pytorch |"))
    assert "+6.00" in byol_line and "| 30 s (1 of 1 seeds) |" in byol_line and "| 1.0x |" in byol_line
    assert "+5.00" in lightly_line and "| 200 s (1 of 1 seeds) |" in lightly_line and "| 3.33x |" in lightly_line
    assert "+4.00" in peer_line and "no curve" in peer_line
    results.compare_plot(rows, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 1000


def test_the_equal_precision_table_takes_the_peers_fp32_runs_of_the_defaults_comparison(monkeypatch):
    """The peers run fp32 as their documentation does: the fp32 comparison reuses those runs (and
    the untrained network of the same seed) beside this project's fp32 run, never its bf16 one."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import results

    common = {"split": "test", "epochs": 2, "train_images": 5000, "backbone": "resnet18-cifar@0.25", "batch": 256,
              "cpu_kind": "AVX-512 BF16", "device": "cpu", "threads": 2, "commit": "abc1234", "seed": 7}
    rows = [{**common, "comparison": "defaults", "library": "untrained", "pretrain_seconds": 0.0,
             "knn_top1_own_norm": 27.0, "knn_top1_imagenet_norm": 26.0},
            {**common, "comparison": "defaults", "library": "byol", "precision": "bf16-mixed", "pretrain_seconds": 50.0,
             "knn_top1": 29.0, "curve": [[1, 25.0, 28.0], [2, 50.0, 29.0]]},
            {**common, "comparison": "defaults", "library": "lightly", "precision": "32-true", "pretrain_seconds": 200.0,
             "knn_top1": 30.0, "curve": [[1, 100.0, 29.5], [2, 200.0, 30.0]]},
            {**common, "comparison": "fp32", "library": "byol", "precision": "32-true", "pretrain_seconds": 80.0,
             "knn_top1": 30.5, "curve": [[1, 40.0, 30.1], [2, 80.0, 30.5]]}]
    table = results.compare_tables(rows)
    fp32 = table[table.index("**fp32**"):]
    assert "| byol | 32-true |" in fp32 and "bf16-mixed" not in fp32
    assert "| lightly | 32-true |" in fp32 and "| 40 s (1 of 1 seeds) |" in fp32  # its own first crossing of 30.0
    assert "+3.50" in fp32  # 30.5 against the untrained network of the defaults run, the same seed


def test_the_side_by_side_gives_the_spread_over_seeds(monkeypatch):
    """Over several seeds each library's kNN, time and time to the level carry their sample
    standard deviation beside the mean; one seed has no spread to give."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import results

    common = {"comparison": "defaults", "split": "test", "epochs": 2, "train_images": 5000,
              "backbone": "resnet18-cifar@0.25", "batch": 256, "cpu_kind": "AVX2", "device": "cpu", "threads": 2,
              "commit": "abc1234"}
    rows = []
    for seed, (mine, seconds, theirs) in {7: (33.0, 90.0, 30.0), 8: (31.0, 110.0, 30.0)}.items():
        rows += [{**common, "seed": seed, "library": "untrained", "pretrain_seconds": 0.0, "knn_top1_own_norm": 27.0,
                  "knn_top1_imagenet_norm": 26.0},
                 {**common, "seed": seed, "library": "byol", "precision": "bf16-mixed", "pretrain_seconds": seconds,
                  "knn_top1": mine, "curve": [[1, seconds / 2, mine - 1], [2, seconds, mine]]},
                 {**common, "seed": seed, "library": "lightly", "precision": "32-true", "pretrain_seconds": 200.0,
                  "knn_top1": theirs, "curve": [[1, 100.0, theirs - 1], [2, 200.0, theirs]]}]
    table = results.compare_tables(rows)
    byol_line = next(line for line in table.splitlines() if line.startswith("| byol |"))
    lightly_line = next(line for line in table.splitlines() if line.startswith("| lightly |"))
    assert "**32.00 ± 1.4 %**; 33.00, 31.00" in byol_line and "| 100 ± 14.1 s |" in byol_line
    assert "| 50 ± 7.1 s (2 of 2 seeds) |" in byol_line  # each seed's own first crossing of 30.0: 45 s and 55 s
    assert "**30.00 ± 0.0 %**" in lightly_line and "| 200 ± 0.0 s |" in lightly_line
    one = results.compare_tables([r for r in rows if r["seed"] == 7])
    assert not [line for line in one.splitlines() if line.startswith("| byol") and "±" in line]


def test_the_digits_for_the_budget_curves_are_grayscale_and_a_run_takes_them_so(tmp_path, monkeypatch, capsys):
    """benchmarks/quickstart.py --digits: ten class folders of one-channel 28-px digits, no two
    alike, which `byol pretrain` decides are grayscale (the data-aware defaults say so)."""
    import numpy as np
    from PIL import Image

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import quickstart

    folder = tmp_path / "digits"
    assert quickstart.write_digits(folder, 15, 0, quickstart.DIGITS_SIDE) == 150
    files = sorted(folder.glob("*/*.png"))
    assert len(files) == 150 and sorted({f.parent.name for f in files}) == [str(d) for d in range(10)]
    first, second = Image.open(files[0]), Image.open(files[1])
    assert first.mode == "L" and first.size == (28, 28)
    assert not np.array_equal(np.asarray(first), np.asarray(second))
    assert main(["pretrain", "--data.path", str(folder), "--train.epochs", "1", "--train.batch_size", "32",
                 "--print-config"]) == 0
    out = capsys.readouterr()
    assert "grayscale images" in out.out + out.err
    cfg = load_config(None, ["--data.path", str(folder), "--train.batch_size", "32"])
    plan = plan_run(cfg)
    assert plan.grayscale is True and build_data(plan).grayscale is True  # what the budget line is told


def test_the_band_defaults_table_gives_each_candidate_its_mean_over_seeds_and_each_seed(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import results

    def row(seed, final, outcome, brightness=1.2):
        return {"set": "textures as 3 bands", "brightness": brightness, "contrast": 0.8, "band_drop_p": 0.0,
                "seed": seed, "epochs": 10, "steps": 230, "knn_untrained_top1": 0.4, "knn_final_top1": final,
                "outcome": outcome, "cpu_kind": "AVX2", "precision": "32-true", "torch": "2.13.0", "data_seed": 1,
                "commit": "abc", "benchmark_command": "python benchmarks/band_defaults.py --seeds 0,1"}

    rows = [row(0, 0.30, "got worse"), row(0, 0.50, "helped"), row(1, 0.60, "helped"), row(0, 0.38, "no clear change", 0.4)]
    table = results.band_defaults_table(rows)
    line = next(x for x in table.splitlines() if x.startswith("| textures as 3 bands | 1.2, 0.8 |"))
    assert "| 0, 1 |" in line and "40.0 % -> **55.0 %** (40.0 -> 50.0; 40.0 -> 60.0)" in line  # seed 0's rerun counts once
    assert "2 helped" in line and "got worse" not in line
    assert "| 0.4, 0.8 | 0.0 | 0 |" in table

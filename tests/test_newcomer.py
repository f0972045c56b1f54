"""What a newcomer following the README trips on: an export from Python under the wrong format, a
kNN that votes with the whole bank, a small folder refused with no way forward, no word on a run's
cost or on where a resumed run goes on, errors in another caller's words."""
import json

import numpy as np
import pytest
from PIL import Image

import byol
from byol.cli import main
from byol.config import ConfigError

from conftest import TINY


def photos(root, per_class: int, size=(300, 200), classes=("a", "b")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            base = np.kron(rng.integers(0, 256, (size[1] // 10, size[0] // 10, 3)), np.ones((10, 10, 1)))
            Image.fromarray(base.astype(np.uint8)).save(root / c / f"{i}.jpg", quality=90)
    return root


def test_byol_export_in_python_takes_the_format_of_the_suffix_as_the_command_line_does(demo_run, tmp_path):
    """byol.export(..., "x.onnx") wrote a safetensors file under the .onnx name."""
    pytest.importorskip("onnx")
    import onnx

    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    info = byol.export(ckpt, tmp_path / "api.onnx")
    assert info["format"] == "onnx" and "shorter side resized" in info["preprocessing"]
    onnx.load(str(tmp_path / "api.onnx"))  # a real ONNX file
    assert byol.export(ckpt, tmp_path / "w.safetensors")["format"] == "safetensors"
    with pytest.raises(ConfigError, match="name the format"):
        byol.export(ckpt, tmp_path / "w.bin")
    assert not (tmp_path / "w.bin").exists()


def test_knn_on_a_small_bank_takes_a_tenth_of_it_and_says_the_untrained_figure(demo_run, demo_data, tmp_path, capsys):
    """With 200 labeled images, k 200 made every query's neighbours the whole bank, and the
    command printed JSON only, with no baseline."""
    ckpt = str(demo_run / "checkpoints" / "last.ckpt")
    train = str(demo_data / "test")  # 100 labeled images
    assert main(["evaluate", "knn", "--checkpoint", ckpt, "--train", train, "--test", train,
                 "-o", str(tmp_path / "k.json")]) == 0
    out = capsys.readouterr()
    record = json.loads(out.out.strip())  # stdout is the JSON, for scripts
    assert record["settings"]["k"] == 10 and "a tenth of the 100 labeled training images" in record["settings"]["k_reason"]
    assert 0 <= record["settings"]["untrained_top1"] <= 1
    line = out.err.strip().splitlines()[-1]  # the readable line
    assert line.startswith("knn top-1 ") and "untrained: " in line and "freshly initialised" in line
    assert main(["evaluate", "knn", "--checkpoint", ckpt, "--train", train, "--test", train, "-k", "200",
                 "-o", str(tmp_path / "k2.json")]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["settings"]["k"] == 200 and "reaches the 100 labeled training images" in record["settings"]["k_reason"]


def test_a_resumed_run_says_where_it_goes_on(demo_data, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--data.path", str(demo_data / "train"), "--train.out_dir", str(out), "--train.knn_every", "0",
            "--log.report", "false", *TINY]
    assert main([*args, "--train.epochs", "1"]) == 0
    capsys.readouterr()
    assert main([*args, "--train.epochs", "2", "--resume"]) == 0
    said = capsys.readouterr().out
    assert f"resuming {out / 'checkpoints' / 'last.ckpt'}: epoch 1 of 2, after step 9 of 18" in said


def test_errors_name_options_in_the_callers_words(demo_run, tmp_path):
    """From Python, "pass --resume" and "--train.epochs" were the command line's words."""
    from byol.wording import COMMAND_LINE

    token = COMMAND_LINE.set(False)  # as a Python caller is: nothing marked the command line
    try:
        with pytest.raises(ConfigError, match=r"pass resume=True to continue it"):
            byol.pretrain({"data": {"path": "anything"}, "train": {"out_dir": str(demo_run)}})
        with pytest.raises(ConfigError, match=r"resume=True: no checkpoint"):
            byol.pretrain({"data": {"path": "anything"}, "train": {"out_dir": str(tmp_path / "new")}}, resume=True)
    finally:
        COMMAND_LINE.reset(token)


@pytest.mark.slow
def test_the_readme_on_a_small_folder_of_photos_gives_a_run_its_cost_and_a_verdict(tmp_path, capsys):
    """20 photos of 300x200 in two class folders: "has 20 usable images, fewer than one batch
    (train.batch_size = 256)" and no way forward."""
    data = photos(tmp_path / "my_images", per_class=10)
    assert main(["preview", str(data), "-o", str(tmp_path / "views.png")]) == 0
    assert main(["pretrain", "--data.path", str(data), "--train.epochs", "2", "--train.out_dir", str(tmp_path / "run"),
                 "--model.backbone_args", "{width: 0.25}", "--model.projection_hidden_dim", "64",
                 "--model.prediction_hidden_dim", "64", "--train.knn_every", "1", "--log.report", "false"]) == 0
    said = capsys.readouterr().out
    assert "train.batch_size 256 -> 8: 18 training images" in said
    assert "plan: 18 training images at 200 px, 2 epochs x 2 steps" in said and "cost: about " in said
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["verdict"]["outcome"] in ("helped", "no clear change", "got worse")


def test_the_cost_line_scales_a_steps_fixed_cost_once_and_its_per_image_cost_by_the_batch():
    """Probe steps of 1.0 s at 4 images and 2.0 s at 12: 0.125 s an image and 0.5 s fixed, so a
    batch of 128 takes 16.5 s, not the 32 s that 4 images' time scaled by 128/4 would say."""
    from byol.training.pretrain import COST_PROBES, step_seconds

    assert COST_PROBES == (4, 12)
    assert step_seconds([1.0, 2.0], 128, 1) == pytest.approx(16.5)
    assert step_seconds([1.0, 2.0], 64, 2) == pytest.approx(2 * (0.5 + 0.125 * 64))  # each micro-batch pays the fixed cost
    assert step_seconds([1.0, 0.9], 128, 1) == pytest.approx(1.0)  # noise that makes a larger step faster: no negative cost

"""Each example in examples/ runs end to end, shortened."""
import importlib.util
from pathlib import Path

from safetensors.torch import load_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_super_resolution_generator_by_hidden_layer(demo_data, tmp_path):
    r = example("super_resolution").main(["--data", str(demo_data / "train"), "--steps", "3", "--batch", "8",
                                          "--out", str(tmp_path / "gen.pt")])
    assert r["upsampler_calls_during_byol"] == 0  # the forward stopped at `body`
    assert r["output_shape"] == [1, 3, 64, 64]


def test_unet_with_byol_encoder(tmp_path):
    r = example("unet_segmentation").main(["--unlabeled", "64", "--labeled", "8", "--test", "8", "--size", "32",
                                           "--pretrain-steps", "2", "--finetune-steps", "2", "--batch", "8",
                                           "--width", "0.125"])
    assert 0.0 <= r["miou_byol"] <= 1.0 and 0.0 <= r["miou_random_init"] <= 1.0 and len(r["byol_loss"]) == 2


def test_make_shapes_masks_match_the_shapes():
    images, masks = example("unet_segmentation").make_shapes(20, 32, seed=0)
    assert images.shape == (20, 3, 32, 32) and masks.shape == (20, 32, 32)
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3} and (masks > 0).any()
    inside, outside = images[:, 0][masks > 0].float(), images[:, 0][masks == 0].float()
    assert (inside - outside.mean()).abs().mean() > 40  # shapes stand out from the background


def test_resnet_cifar10_pretrain_then_finetune(cifar_dir, tmp_path):
    from byol.core.backbones import resnet18

    out = tmp_path / "ex"
    r = example("resnet_cifar10").main([
        "--cifar", str(cifar_dir), "--out", str(out), "--epochs", "1", "--per-class", "10",
        "--labels-per-class", "5", "--finetune-epochs", "1", "--test-images", "100", "--width", "0.125",
        "--train.batch_size", "32", "--model.projection_hidden_dim", "64", "--model.prediction_hidden_dim", "64",
        "--log.progress", "false", "--log.tensorboard", "false", "--log.report", "false"])
    assert r["labeled_images"] == 50 and 0 <= r["finetune_byol_top1"] <= 1
    resnet18(stem="cifar", width=0.125).load_state_dict(load_file(str(out / "backbone.safetensors")))

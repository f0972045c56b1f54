"""Short pretraining on real CIFAR-10 images from ../shared/data/cifar10 (skipped without them)."""
import csv

import lightning as L
import torch

from byol.config import load_config
from byol.training.pretrain import pretrain


class StopAfter(L.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epochs:
            trainer.should_stop = True


def cifar_config(cifar_dir, out, epochs=3):
    return load_config("configs/cifar10.yaml", [
        "--data.path", str(cifar_dir / "test.tar.gz"), "--data.val_path", "null", "--data.limit", "384",
        "--data.val_fraction", "0.25", "--model.backbone_args", "{stem: cifar, width: 0.125}",
        "--model.projection_hidden_dim", "128", "--model.prediction_hidden_dim", "128",
        "--train.batch_size", "64", "--train.epochs", str(epochs), "--train.knn_every", "0",
        "--optim.warmup_epochs", "1", "--train.out_dir", str(out), "--log.progress", "false",
        "--log.tensorboard", "false", "--train.log_every", "1"])


def epoch_losses(out):
    rows = list(csv.DictReader(open(out / "csv" / "metrics.csv")))
    return [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]


def backbone(out):
    sd = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if k.startswith("model.")}


def test_short_cifar_pretraining_lowers_loss_and_resumes(cifar_dir, tmp_path):
    full = tmp_path / "full"
    summary = pretrain(cifar_config(cifar_dir, full))
    losses = epoch_losses(full)
    assert summary["steps"] == 3 * (384 // 64) and len(losses) == 3
    assert losses[-1] < losses[0], losses

    # the same run, stopped after 2 epochs, then resumed from its checkpoint
    part = tmp_path / "part"
    pretrain(cifar_config(cifar_dir, part), callbacks=[StopAfter(2)])
    assert torch.load(part / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1
    resumed = pretrain(cifar_config(cifar_dir, part), resume=True)
    assert resumed["steps"] == summary["steps"]
    assert len(epoch_losses(part)) == 2 and (part / "csv-resume1" / "metrics.csv").exists()  # first log kept
    a, b = backbone(full), backbone(part)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-identical on the CPU

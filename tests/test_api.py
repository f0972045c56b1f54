"""The Python API a user reaches for: byol.pretrain with a dict or a YAML path, BYOLModule in the
user's own Trainer with plain tensor batches, byol.export / evaluate / embed, model.embed on
uint8 images."""
import json

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

import byol
from byol.config import ConfigError
from byol.core.augment import normalize, to_float
from byol.core.backbones import resnet18
from byol.training.module import BYOLModule

SMALL = {"model": {"backbone_args": {"stem": "cifar", "width": 0.125}, "projection_hidden_dim": 64,
                   "prediction_hidden_dim": 64, "projection_dim": 32},
         "data": {"image_size": 32}, "train": {"batch_size": 32, "knn_k": 10},
         "log": {"progress": False, "tensorboard": False, "report": False}}


def nested(base: dict, **sections) -> dict:
    out = json.loads(json.dumps(base))
    for section, values in sections.items():
        out.setdefault(section, {}).update(values)
    return out


@pytest.mark.parametrize("kind", ["tensor", "tensor-dataset", "images-and-labels"])
def test_byol_module_trains_on_plain_tensor_batches_in_a_users_trainer(kind, tmp_path):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    labels = torch.arange(16) % 4
    data = {"tensor": images,  # a DataLoader over a tensor yields image tensors
            "tensor-dataset": torch.utils.data.TensorDataset(images),  # yields [images]
            "images-and-labels": torch.utils.data.TensorDataset(images, labels)}[kind]
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    net = resnet18(stem="cifar", width=0.125)
    module = BYOLModule(net, nested(SMALL, train={"out_dir": str(tmp_path)}))
    before = [p.detach().clone() for p in net.parameters()]
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # the user's net was trained
    features = module(images[:4])  # uint8 in: normalised as the views were
    expected = module.model.embed(normalize(to_float(images[:4]), module.cfg.augment.mean, module.cfg.augment.std))
    assert features.shape == (4, 64) and torch.allclose(features, expected)


def test_model_embed_on_uint8_images_normalises_or_says_what_it_needs():
    from byol import BYOL, AugmentConfig

    net = resnet18(stem="cifar", width=0.125)
    model = BYOL(net, hidden_layer="avgpool", image_size=32, projection_hidden_dim=64, prediction_hidden_dim=64)
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(TypeError, match="pass mean= and std="):
        model.embed(images)
    aug = AugmentConfig()
    by_hand = model.embed(normalize(to_float(images), aug.mean, aug.std))
    assert torch.allclose(model.embed(images, mean=aug.mean, std=aug.std), by_hand)


def test_pretrain_takes_a_dict_or_a_yaml_path_and_export_evaluate_embed_are_functions(demo_data, tmp_path):
    run = tmp_path / "run"
    settings = nested(SMALL, data={"path": str(demo_data / "train"), "val_path": str(demo_data / "test")},
                      train={"epochs": 1, "knn_every": 1, "out_dir": str(run)})
    summary = byol.pretrain(settings)
    assert summary["steps"] == 300 // 32 and summary["knn_final_top1"] > 0
    import yaml

    path = tmp_path / "mine.yaml"
    settings["train"].update(epochs=0, out_dir=str(tmp_path / "untrained"))
    path.write_text(yaml.safe_dump(settings))
    assert byol.pretrain(str(path))["steps"] == 0  # a YAML path, as --config takes it
    ckpt = str(run / "checkpoints" / "last.ckpt")
    out = byol.export(ckpt, tmp_path / "backbone.safetensors")["path"]  # what was written, and how
    net = resnet18(stem="cifar", width=0.125)
    net.load_state_dict(load_file(str(out)))  # strict, the user's own key names
    record = byol.evaluate(ckpt, "knn", train=str(demo_data / "train"), test=str(demo_data / "test"), settings={"k": 10})
    assert record["protocol"] == "knn" and record["test_images"] == 100 and 0 < record["top1"] <= 1
    features, files = byol.embed(str(out), str(demo_data / "test"))
    assert features.shape == (100, 64) and len(files) == 100 and files == sorted(files)
    with pytest.raises(ConfigError, match="a config must be"):
        byol.pretrain(3)

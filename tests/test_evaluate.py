import torch
from torch import nn

from byol.data.image_sets import MemoryImages
from byol.data.splits import balanced_split
from byol.evaluation.protocols import (ClassifierSettings, Inputs, knn_accuracy, knn_predict, linear_probe,
                                       logistic_regression, train_classifier)


def blobs(n=200, d=8, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, d, generator=g) * 4
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, d, generator=g), y


def test_knn_weighted_vote_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    scores = knn_predict(bank, labels, torch.tensor([[0.1, 1.0]]), 2, k=2, temperature=0.1)
    assert scores.argmax().item() == 1  # nearest is class 1, though class 0 has more members
    x, y = blobs()
    assert knn_accuracy(x, y, x, y, k=5)["top1"] > 0.95


def test_linear_and_logistic_on_separable_features():
    xtr, ytr = blobs(seed=1)
    xte, yte = blobs(seed=1)
    assert linear_probe(xtr, ytr, xte + 0.01, yte, epochs=20)["top1"] > 0.95
    result = logistic_regression(xtr, ytr, xte, yte)
    assert result["top1"] > 0.95 and result["l2"] in result["validation_top1"]


def test_balanced_split_is_per_class_and_seeded():
    labels = torch.arange(100) % 4
    rest, chosen = balanced_split(labels, 0.1, seed=5)
    assert len(chosen) == 12 and torch.bincount(labels[chosen]).tolist() == [3, 3, 3, 3]
    assert torch.equal(chosen, balanced_split(labels, 0.1, seed=5)[1])
    assert not torch.equal(chosen, balanced_split(labels, 0.1, seed=6)[1])
    assert len(set(rest.tolist()) | set(chosen.tolist())) == 100


def test_linear_eval_freezes_and_finetune_trains_the_backbone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten())
    images = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    labels = torch.arange(32) % 2
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data, inputs = MemoryImages(images, labels), Inputs((0.5,) * 3, (0.25,) * 3, 16)
    train_classifier(net, 2, data, data, inputs, ClassifierSettings(epochs=1, batch_size=16))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # frozen: not even BN statistics moved
    r = train_classifier(net, 2, data, data, inputs, ClassifierSettings(epochs=1, batch_size=16, fine_tune=True,
                                                                         bn_momentum=0.5))
    assert not torch.equal(net[0].weight, before["0.weight"]) and net[1].momentum == 0.5 and r["fine_tune"]


def test_test_labels_are_matched_to_training_classes_by_name(tmp_path):
    # a test set with some of the classes (here: copies of two training classes) is scored
    # against those classes, not against whichever classes happen to share its folder indices
    import shutil

    import pytest

    from byol.data.listing import DataError
    from byol.evaluation.saved import Reader, evaluate
    from conftest import write_folder

    train = write_folder(tmp_path / "train", classes=("bird", "cat", "dog"), per_class=3, size=(16, 16))
    for c in ("cat", "dog"):
        shutil.copytree(train / c, tmp_path / "test" / c)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    reader = Reader(net, (0.5,) * 3, (0.25,) * 3, image_size=16, crop=1.0, channels=3)
    r = evaluate("unused", "knn", train=str(train), test=str(tmp_path / "test"), reader=reader, settings={"k": 1})
    assert r["top1"] == 1.0 and r["test_images"] == 6
    shutil.copytree(train / "cat", tmp_path / "test" / "zebra")
    with pytest.raises(DataError, match="class folder 'zebra' is not among the training classes"):
        evaluate("unused", "knn", train=str(train), test=str(tmp_path / "test"), reader=reader, settings={"k": 1})


def test_evaluate_settings_from_a_dict_refuse_an_unknown_key_in_one_line():
    import pytest

    from byol.config import ConfigError
    from byol.evaluation.saved import EvalSettings, eval_settings

    assert eval_settings({"k": 10, "epochs": 3}) == EvalSettings(k=10, epochs=3)
    with pytest.raises(ConfigError, match="unknown key 'kk'; valid keys: k, temperature"):
        eval_settings({"kk": 10})

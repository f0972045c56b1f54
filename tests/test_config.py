import pytest

from byol.config import ConfigError, from_dict, load_config, parse_overrides, to_dict


def test_unknown_key_is_named_with_valid_keys(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'optim.lrr'; valid keys in 'optim': name, base_lr"):
        load_config(f)
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        from_dict({"trian": {}})


def test_types_and_ranges_are_checked():
    with pytest.raises(ConfigError, match="train.epochs: expected an integer, got 'ten'"):
        from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match=r"augment.view2.solarize_p = 1.5: is a probability"):
        from_dict({"augment": {"view2": {"solarize_p": 1.5}}})
    with pytest.raises(ConfigError, match="optim.name = 'rmsprop'"):
        from_dict({"optim": {"name": "rmsprop"}})


def test_overrides_and_yaml_numbers(tmp_path):
    assert parse_overrides(["--train.epochs", "5", "--optim.name=sgd"]) == {"train": {"epochs": 5},
                                                                            "optim": {"name": "sgd"}}
    cfg = load_config(None, ["--optim.weight_decay", "5e-4", "--model.backbone_args", "{width: 0.5}",
                             "--augment.view1.crop_scale", "[0.2, 1.0]"])
    assert cfg.optim.weight_decay == 5e-4
    assert cfg.model.backbone_args == {"width": 0.5}
    assert cfg.augment.view1.crop_scale == (0.2, 1.0)
    with pytest.raises(ConfigError, match="command line: unknown key 'train.epoch'"):
        load_config(None, ["--train.epoch", "3"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_round_trip():
    cfg = from_dict({"train": {"epochs": 3}, "data": {"image_size": 64}})
    again = from_dict(to_dict(cfg))
    assert again == cfg and again.augment.size == 64


def test_shipped_configs_load():
    for name in ("demo", "cifar10", "imagenet"):
        load_config(f"configs/{name}.yaml")

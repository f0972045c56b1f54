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
    with pytest.raises(ConfigError, match="augment.view2.brightness_mode = 'mul': must be add or scale"):
        from_dict({"augment": {"view2": {"brightness_mode": "mul"}}})
    with pytest.raises(ConfigError, match="augment.view1.contrast_mode = 'luma': must be channel or gray"):
        from_dict({"augment": {"view1": {"contrast_mode": "luma"}}})
    with pytest.raises(ConfigError, match="augment.interpolation = 'area': must be bilinear, bicubic or nearest"):
        from_dict({"augment": {"interpolation": "area"}})


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


def test_pretrain_help_lists_every_key_with_its_default_and_description(capsys):
    import pytest

    from byol.cli import main
    from byol.config import Config, describe_keys, to_dict

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k != "backbone_args" and k != "epoch_presets":
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    keys = set(flat(to_dict(Config())))
    assert keys == {k for k, _, _ in describe_keys()}  # generated from the definitions: no drift
    for key in keys:
        assert f"  {key} = " in text, key
    assert "optim.clip_lr = false" in text and "never exceeds the scheduled one" in text
    assert all(description for _, _, description in describe_keys()), "every key has a description"


def test_no_development_paths_in_the_package_or_its_help(capsys):
    from pathlib import Path

    import pytest

    import byol
    from byol.cli import main

    package = Path(byol.__file__).parent
    readme = Path(__file__).parents[1] / "README.md"  # the package's long description (pyproject.toml)
    for f in [*package.rglob("*.py"), *package.rglob("*.yaml"), readme]:
        text = f.read_text()
        assert "../shared" not in text and "shared/data" not in text, f
    for argv in (["--help"], ["pretrain", "--help"], ["evaluate", "knn", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "shared" not in capsys.readouterr().out

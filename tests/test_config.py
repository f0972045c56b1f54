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
    from byol.cli.keys import describe_keys
    from byol.config import Config, to_dict

    with pytest.raises(SystemExit) as e:
        main(["pretrain", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("backbone_args", "epoch_presets", "resolution_schedule"):
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


def test_a_preset_never_changes_what_a_later_file_or_the_command_line_sets(tmp_path):
    mine = tmp_path / "my.yaml"
    mine.write_text("optim:\n  base_lr: 0.9\n")
    cfg = load_config(["imagenet", mine], ["--train.epochs", "300"])
    assert cfg.optim.base_lr == 0.9 and cfg.given["optim.base_lr"] == str(mine)
    assert cfg.optim.weight_decay == 1e-6 and cfg.given["optim.weight_decay"].endswith("epoch_presets[300]")
    assert "kept as set: optim.base_lr" in cfg.notes[0]
    cfg = load_config(["imagenet", mine], ["--train.epochs", "300", "--model.tau_base", "0.9"])
    assert cfg.model.tau_base == 0.9 and cfg.given["model.tau_base"] == "command line"
    # the epochs in a later file pick the preset, as they would on the command line
    mine.write_text("train:\n  epochs: 1000\n")
    cfg = load_config(["imagenet", mine])
    assert (cfg.optim.base_lr, cfg.model.tau_base) == (0.2, 0.996)


def test_from_dict_applies_presets_to_the_keys_it_leaves_out():
    presets = {10: {"optim.base_lr": 0.5, "model.tau_base": 0.9}}
    cfg = from_dict({"train": {"epochs": 10}, "epoch_presets": presets})
    assert (cfg.optim.base_lr, cfg.model.tau_base) == (0.5, 0.9)
    assert cfg.given["optim.base_lr"] == "config: epoch_presets[10]"
    cfg = from_dict({"train": {"epochs": 10}, "optim": {"base_lr": 0.7}, "epoch_presets": presets})
    assert (cfg.optim.base_lr, cfg.model.tau_base) == (0.7, 0.9)
    # a run's saved config (every key written out) is read back unchanged
    again = from_dict(to_dict(load_config("cifar10", ["--train.epochs", "10", "--model.tau_base", "0.97"])))
    assert again.model.tau_base == 0.97 and again.model.projection_hidden_dim == 8192


def test_the_lightning_module_applies_presets_as_the_command_line_does():
    from torch import nn

    from byol.training.module import BYOLModule

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    values = {"train": {"epochs": 10}, "model": {"projection_hidden_dim": 32},
              "epoch_presets": {10: {"model.tau_base": 0.9, "model.projection_hidden_dim": 64,
                                     "model.prediction_hidden_dim": 16}}}
    module = BYOLModule(net, values)
    assert module.cfg.model.tau_base == 0.9 and module.cfg.model.projection_hidden_dim == 32
    assert module.cfg.model.prediction_hidden_dim == 16


def test_new_keys_are_refused_with_one_line_naming_them():
    with pytest.raises(ConfigError, match=r"model.head_bias = 'all': must be hidden, output or both"):
        from_dict({"model": {"head_bias": "all"}})
    with pytest.raises(ConfigError, match=r"optim.schedule_per = 'batch': must be step or epoch"):
        from_dict({"optim": {"schedule_per": "batch"}})
    with pytest.raises(ConfigError, match=r"data.large_images = 'full': full reads image folders and shards"):
        from_dict({"data": {"dataset": "video", "large_images": "full"}})


def test_a_config_is_a_frozen_value_and_every_change_makes_a_new_one():
    import dataclasses

    from conftest import make_facts

    from byol.config import updated
    from byol.training.plan import decide

    cfg = load_config(None, ["--data.image_size", "32", "--augment.view2.blur_p", "0.5"])
    for section, name in ((cfg.train, "epochs"), (cfg.augment.view1, "blur_p"), (cfg, "train")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(section, name, 3)
    plan = decide(cfg, make_facts(typical_side=None, grayscale=True))
    adapted = plan.cfg
    assert cfg.augment.view1.blur_p == 1.0 and cfg.augment.view1.saturation == 0.2 and cfg.notes == []  # untouched
    assert adapted.augment.view1.blur_p == 0.0 and adapted.augment.view2.blur_p == 0.5  # what was set is kept
    assert adapted.notes == [d.note for d in plan.decisions if d.note] and adapted.given == cfg.given  # a choice stays a default
    larger = updated(cfg, {"data.image_size": 64}, ["a note"])
    assert (larger.data.image_size, larger.augment.size, cfg.augment.size) == (64, 64, 32)
    assert larger.notes == ["a note"] and larger != cfg
    with pytest.raises(ConfigError, match="data.image_size = 4: must be >= 8"):
        updated(cfg, {"data.image_size": 4})


def test_the_data_is_built_from_the_final_config(tmp_path):
    from conftest import write_folder

    from byol.training.data import build_data
    from byol.training.pretrain import plan_run

    gray = write_folder(tmp_path / "gray", classes=("a", "b"), per_class=8, size=(32, 32), mode="L")
    cfg = load_config(None, ["--data.path", str(gray), "--data.augment_on", "workers", "--train.batch_size", "4"])
    plan = plan_run(cfg)
    data = build_data(plan)
    views = data.loader.dataset.transform.batch.cfg  # the per-image transform the workers run
    assert views == plan.cfg.augment and views.view1.saturation == views.view1.blur_p == 0.0
    assert cfg.augment.view1.saturation == 0.2  # the config it started from is unchanged


def test_print_config_plans_what_the_run_builds_listing_once_and_decoding_only_a_sample(tmp_path, monkeypatch):
    from conftest import write_folder

    import byol.data.sources as sources
    import byol.training.data as training_data
    from byol.training.pretrain import plan_run

    gray = write_folder(tmp_path / "gray", classes=("a", "b"), per_class=8, size=(40, 30), mode="L")
    cfg = load_config(None, ["--data.path", str(gray), "--train.batch_size", "4", "--train.epochs", "2"])
    calls = {"list": 0, "decoded": []}
    listed, decode = sources.list_images, sources.decode_to_memory

    def counting_list(path):
        calls["list"] += 1
        return listed(path)

    def counting_decode(images, size, channels=3, limit=None, **kw):
        out = decode(images, size, channels, limit=limit, **kw)
        calls["decoded"].append(len(out))
        return out

    monkeypatch.setattr(sources, "list_images", counting_list)
    monkeypatch.setattr(sources, "decode_to_memory", counting_decode)
    monkeypatch.setattr(sources, "GRAYSCALE_SAMPLE", 3)
    plan = plan_run(cfg)  # what --print-config shows
    assert calls == {"list": 1, "decoded": [3]}  # one listing; only the sample's pixels are decoded
    calls.update(list=0, decoded=[])
    data = training_data.build_data(plan)  # what the run builds from the same plan: no second listing
    assert calls["list"] == 0 and sum(calls["decoded"]) == 16  # 14 trained on, 2 held out, each decoded once
    assert plan.cfg.data.image_size == 30 and plan.cfg.augment.view1.saturation == 0.0  # grayscale from the pixels
    assert f"plan: {data.images} training images at 30 px" in plan.lines()[-1]

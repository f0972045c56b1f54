"""The run plan: facts read once, decisions made once by a pure function on them, and every
command that shows a decision showing the same one. decide() is tested here on hand-made facts."""
import inspect
import json
import sys
import types

import pytest

from byol.cli import main
from byol.config import ConfigError, load_config
from byol.training.facts import Launch, read_launch
from byol.training.plan import decide

from conftest import TINY, make_facts, write_folder


def test_decide_is_a_pure_function_of_the_config_and_the_facts():
    """No folder, machine or environment is read: the same facts give the same plan, whatever
    the data path names (here: nothing)."""
    cfg = load_config(None, ["--data.path", "/nowhere/at/all", "--train.epochs", "10"])
    facts = make_facts(train_images=1800, typical_side=96, grayscale=True)
    first, second = decide(cfg, facts), decide(cfg, facts)
    assert first == second and first.cfg.data.image_size == 96
    assert [d.name for d in first.decisions] == ["image size", "pixels", "recipe", "augmentation", "budget"]
    assert first.lines()[-1].startswith("plan: 1800 training images at 96 px, 10 epochs x 7 steps = 70 steps")
    numbers = first.as_dict()["numbers"]
    assert numbers["world_size"] == 1 and numbers["global_batch"] == 256 and numbers["precision"] == "32-true"
    assert first.as_dict()["facts"]["data"]["typical_side"] == 96  # plan.json keeps the facts it was decided on


def test_the_config_is_built_once_from_every_decision():
    import byol.training.plan as plan_module

    calls = []
    real = plan_module.updated
    plan_module.updated = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        decide(load_config(None, ["--train.epochs", "3"]), make_facts(train_images=500, typical_side=28,
                                                                           grayscale=True))
    finally:
        plan_module.updated = real
    assert calls == [1]


@pytest.mark.parametrize("env, launcher, world, rank, local", [
    ({}, "none", None, None, None),
    ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"},
     "torchrun", 4, 3, 2),
    ({"LOCAL_RANK": "1", "NODE_RANK": "1"}, "lightning", None, None, None),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_NTASKS_PER_NODE": "4",
      "SLURM_NODEID": "1"}, "slurm", None, 5, 4),  # the world: train.devices x train.num_nodes, as SLURM's tasks
])
def test_the_launch_is_read_from_the_environment_in_one_place(env, launcher, world, rank, local):
    launch = read_launch(env)
    assert (launch.launcher, launch.world_size, launch.rank, launch.local_world_size) == (launcher, world, rank, local)


def test_the_launch_decides_world_rank_and_workers():
    cfg = load_config(None, ["--train.devices", "2", "--train.num_nodes", "2", "--train.batch_size", "16"])
    torchrun = Launch("torchrun", world_size=4, rank=3, local_rank=1, local_world_size=2, node_rank=1)
    plan = decide(cfg, make_facts(train_images=4000, launch=torchrun, cores=16))
    assert (plan.world_size, plan.rank, plan.local_world_size, plan.workers) == (4, 3, 2, 7)
    assert plan.global_batch == 64 and plan.steps_per_epoch == 4000 // 4 // 16
    lightning = Launch("lightning", world_size=4, local_rank=1, node_rank=1)
    assert decide(cfg, make_facts(train_images=4000, launch=lightning)).rank == 3  # node 1 x 2 devices + 1
    with pytest.raises(ConfigError, match="the launcher started 3 training processes"):
        decide(cfg, make_facts(launch=Launch("torchrun", world_size=3, rank=0)))
    with pytest.raises(ConfigError, match="this machine has no CUDA GPU"):
        decide(load_config(None, ["--train.accelerator", "gpu"]), make_facts())


def test_a_small_folder_gets_a_batch_it_can_fill_and_a_set_batch_names_its_key():
    """20 images: "fewer than one batch (train.batch_size = 256)" and no way forward; 400
    images: one step of 256 an epoch, 144 images unused, unsaid."""
    few = decide(load_config(None, []), make_facts(train_images=20, typical_side=None))
    assert few.cfg.train.batch_size == 8 and "train.batch_size 256 -> 8" in few.cfg.notes[0]
    some = decide(load_config(None, []), make_facts(train_images=400, typical_side=None))
    assert some.cfg.train.batch_size == 64 and some.steps_per_epoch == 6
    assert "(16 left out of each epoch: the last partial batch)" in some.lines()[-1]
    assert decide(load_config(None, []), make_facts(train_images=1800)).cfg.train.batch_size == 256  # enough: kept
    from byol.data.listing import DataError

    with pytest.raises(DataError, match=r"train.batch_size 256 \(from command line\): set train.batch_size to 16"):
        decide(load_config(None, ["--train.batch_size", "256"]), make_facts(train_images=20))


def test_resumable_keys_are_declared_on_the_schema():
    from byol.config import resumable_keys

    assert "train.epochs" in resumable_keys() and "log.mlflow_uri" in resumable_keys()
    assert not {"optim.base_lr", "model.projection_dim", "data.image_size"} & resumable_keys()


def test_the_model_spec_is_one_value_from_the_config_to_byol():
    from byol.core.model import BYOL, ModelSpec

    params = [p for p in inspect.signature(BYOL.__init__).parameters if p not in ("self", "settings")]
    assert len(params) <= 6
    cfg = load_config(None, ["--model.projection_dim", "32", "--model.hidden_layer", "avgpool"])
    assert isinstance(cfg.model, ModelSpec) and cfg.model.projection_dim == 32  # the config's model section is a spec


@pytest.fixture
def uncached_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache and a stand-in huggingface_hub whose download writes a model
    with mean/std 0.5/0.25 into it, as the real one would."""
    from byol.checkpoint import save_safetensors
    from byol.core.backbones import resnet18

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    downloads = []

    def hf_hub_download(repo, filename, cache_dir):
        from pathlib import Path

        snapshot = Path(cache_dir) / f"models--{repo.replace('/', '--')}" / "snapshots" / "abc"
        snapshot.mkdir(parents=True, exist_ok=True)
        if filename == "model.safetensors":
            save_safetensors(resnet18(width=0.125, stem="cifar").state_dict(), snapshot / filename)
        else:
            (snapshot / filename).write_text(json.dumps({"pretrained_cfg": {"mean": [0.5] * 3, "std": [0.25] * 3}}))
        downloads.append(filename)
        return str(snapshot / filename)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    return tmp_path / "hf", downloads


def test_an_uncached_hub_models_normalisation_is_the_same_in_every_command(uncached_hub, tmp_path, capsys):
    """--print-config and preview decided before the named weights were fetched: an uncached Hub
    model was shown with ImageNet's normalisation and trained with its own."""
    import shutil

    from byol.training.pretrain import pretrain

    cache, downloads = uncached_hub
    data = write_folder(tmp_path / "imgs", per_class=16, size=(32, 32))
    common = ["--model.init_weights", "hf-hub:org/net", "--model.backbone_args", "{width: 0.125, stem: cifar}",
              "--train.batch_size", "8", "--train.epochs", "1", "--train.knn_every", "0", "--log.report", "false"]
    assert main(["pretrain", "--data.path", str(data), *common, "--print-config"]) == 0
    shown = capsys.readouterr().out
    assert "augment.mean: [0.5, 0.5, 0.5]" in shown and "augment.std: [0.25, 0.25, 0.25]" in shown
    shutil.rmtree(cache)
    assert main(["preview", str(data), "-o", str(tmp_path / "v.png"), *common]) == 0
    assert "trained with mean [0.5, 0.5, 0.5], std [0.25, 0.25, 0.25]" in capsys.readouterr().out
    shutil.rmtree(cache)
    assert main(["pretrain", "--data.path", str(data), *common, "--train.out_dir", str(tmp_path / "cli")]) == 0
    shutil.rmtree(cache)
    pretrain({"data": {"path": str(data)}, "model": {"init_weights": "hf-hub:org/net",
                                                     "backbone_args": {"width": 0.125, "stem": "cifar"}},
              "train": {"batch_size": 8, "epochs": 1, "knn_every": 0, "out_dir": str(tmp_path / "py")},
              "log": {"report": False}})
    for run in ("cli", "py"):
        saved = (tmp_path / run / "config.yaml").read_text()
        assert "- 0.5\n" in saved and "- 0.25\n" in saved, run
    assert downloads.count("model.safetensors") == 4  # each command fetched it before deciding


def test_the_run_folder_keeps_its_plan_and_the_summary_what_reproduces_it(demo_run):
    plan = json.loads((demo_run / "plan.json").read_text())
    assert plan["facts"]["data"]["source"] == "folder" and plan["facts"]["hardware"]["cores"] >= 1
    assert plan["numbers"]["precision"] in ("32-true", "bf16-mixed") and plan["notes"]
    assert all({"name", "changes", "note"} <= set(d) for d in plan["decisions"])
    summary = json.loads((demo_run / "summary.json").read_text())
    r = summary["reproducibility"]
    assert r["byol"] and r["torch"] and r["threads"] >= 1 and r["world_size"] == 1
    assert r["precision_reason"].startswith(("auto", "train.precision"))
    assert r["byol_commit"] is None or len(r["byol_commit"]) >= 7  # from a git checkout: its commit


def test_the_demo_prints_what_reproduces_its_figure(demo_data, tmp_path, capsys):
    assert main(["demo", "--data", str(demo_data), "--out", str(tmp_path / "d"), "--train.epochs", "1",
                 "--log.report", "false", *TINY]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("reproducibility: "))
    assert "torch" in line and "threads" in line and "precision" in line

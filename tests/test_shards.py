"""WebDataset-style tar shards: writing, reading per rank and worker, training from them."""
import json
import tarfile

import pytest
import torch

import byol.data.loader as loader
from byol.cli import main
from byol.data.batch import collate
from byol.data.shards import ShardStream, write_shards
from conftest import TINY, write_folder


@pytest.fixture
def shards(tmp_path):
    src = write_folder(tmp_path / "src", classes=("a", "b", "c"), per_class=10, size=(12, 12))
    write_shards(src, tmp_path / "shards", shard_size=7)
    return tmp_path / "shards"


def test_shards_hold_every_image_with_its_class(shards, tmp_path):
    index = json.loads((shards / "shards.json").read_text())
    assert [s["count"] for s in index["shards"]] == [7, 7, 7, 7, 2] and index["classes"] == ["a", "b", "c"]
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
    assert names[0].endswith(".png") and names[1] == names[0][:-4] + ".cls"  # WebDataset layout
    ds = ShardStream(str(shards), 12, shuffle_buffer=5)
    items = [(b.images, b.labels) for b in ds]
    assert len(items) == 30 and sorted(int(y) for _, y in items) == [0] * 10 + [1] * 10 + [2] * 10
    # the same pixels as the source images, in a shuffled order
    src = sorted(x.sum().item() for x, _ in items)
    again = sorted(b.images.sum().item() for b in ShardStream(str(shards), 12, shuffle_buffer=1))
    assert src == again


@pytest.mark.parametrize("world_size, workers", [(2, 1), (2, 2), (4, 2)])
def test_ranks_and_workers_read_disjoint_equal_shares(shards, monkeypatch, world_size, workers):
    seen = []
    for rank in range(world_size):
        monkeypatch.setattr(loader, "world", lambda rank=rank: (rank, world_size))
        ds = ShardStream(str(shards), 12, batch_size=2, shuffle_buffer=3)
        dl = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, drop_last=True, collate_fn=collate)
        mine = [b.images.flatten(1).sum(1) for b in dl]
        assert len(mine) == len(dl) == 30 // world_size // 2  # every rank runs as many steps
        seen += torch.cat(mine).tolist()
    if (world_size, workers) == (2, 1):  # each reader's shards hold exactly its share: one clean pass
        assert len(set(seen)) == len(seen)
    else:  # uneven shards: a reader that runs short starts its shards again (a few repeats)
        assert len(set(seen)) >= len(seen) - world_size * workers


def test_pretrain_from_shards_and_fsspec_url(shards, tmp_path, demo_data):
    out = tmp_path / "run"
    write_shards(demo_data / "train", tmp_path / "demo_shards", shard_size=64)
    assert main(["pretrain", "--data.dataset", "shards", "--data.path", f"file://{tmp_path / 'demo_shards'}",
                 "--data.val_path", str(demo_data / "test"), "--data.num_workers", "2", "--train.epochs", "1",
                 "--train.knn_every", "1", "--train.out_dir", str(out), "--log.report", "false", *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 300 // 32 and summary["train_images"] == 300 and len(summary["knn"]) == 2


def test_shards_cli_and_missing_index(demo_data, tmp_path, capsys):
    assert main(["shards", str(demo_data / "train"), str(tmp_path / "s"), "--shard-size", "100"]) == 0
    assert "wrote 3 shards, 300 images" in capsys.readouterr().out
    assert main(["pretrain", "--data.dataset", "shards", "--data.path", str(tmp_path), *TINY]) == 2
    assert "has no shards.json" in capsys.readouterr().err


def test_a_corrupt_image_in_a_shard_is_skipped_and_counted(tmp_path, capsys):
    src = write_folder(tmp_path / "src", classes=("a",), per_class=6, size=(8, 8))
    (src / "a" / "2.png").write_bytes(b"not a png")
    write_shards(src, tmp_path / "sh", shard_size=10, shuffle=False)
    ds = ShardStream(str(tmp_path / "sh"), 8, shuffle_buffer=1)
    items = list(ds)
    assert capsys.readouterr().err.count("skipping unreadable image") == 1
    assert len(items) == 6 and len(ds.bad) == 1  # the stream cycles to make up the epoch's share

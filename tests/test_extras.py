"""Optional libraries that are installed but broken never break a run that does not use them.

A torchvision built for another torch fails at import with a RuntimeError ("operator
torchvision::nms does not exist"), and Lightning's torchmetrics imports it whenever its package
is installed. The fake torchvision below fails the same way and has the package metadata that
makes it look installed."""
import os
import subprocess
import sys
from pathlib import Path

from conftest import TINY, write_folder


def broken_torchvision(root: Path) -> Path:
    site = root / "site"
    (site / "torchvision").mkdir(parents=True)
    (site / "torchvision" / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = site / "torchvision-0.28.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.28.0\n")
    return site


def byol(args: list[str], site: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "byol.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_a_broken_torchvision_breaks_no_run_that_does_not_use_it(tmp_path):
    site = broken_torchvision(tmp_path)
    data = write_folder(tmp_path / "imgs", classes=("a", "b"), per_class=20, size=(32, 32))
    probe = subprocess.run([sys.executable, "-c", "import torchvision"], env={**os.environ, "PYTHONPATH": str(site)},
                           capture_output=True, text=True)
    assert "torchvision::nms does not exist" in probe.stderr  # the fake fails as the real one does
    run = byol(["pretrain", "--data.path", str(data), "--train.epochs", "1", "--train.out_dir", str(tmp_path / "run"),
                "--log.report", "false", *TINY], site, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "run" / "summary.json").is_file()


def test_a_backbone_that_needs_a_broken_torchvision_says_so_in_one_line(tmp_path):
    site = broken_torchvision(tmp_path)
    data = write_folder(tmp_path / "imgs", classes=("a", "b"), per_class=20, size=(32, 32))
    for args in (["layers", "torchvision.models:resnet18"],
                 ["pretrain", "--data.path", str(data), "--train.out_dir", str(tmp_path / "run"), *TINY,
                  "--model.backbone", "torchvision.models:resnet18", "--model.backbone_args", "{}"]):
        run = byol(args, site, tmp_path)
        assert run.returncode == 2, run.stderr[-2000:]
        line, = run.stderr.strip().splitlines()[-1:]
        assert "Traceback" not in run.stderr and "needs torchvision, which is installed but does not import" in line
        assert "operator torchvision::nms does not exist" in line and "or uninstall it" in line

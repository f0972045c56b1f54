"""The documentation: README.md and every page under docs/ run as written, the site builds with
warnings as errors, and the generated references hold every key and option.

Each page runs in a folder of its own, its code blocks in order: each Python block on its own
(a fresh namespace: a block a reader copies must run alone), unless its first line says what it
takes from the blocks above ("# with preprocess() from above"), the shell commands on tiny data
(the demo textures as `my_images/`, `labeled/train`, `labeled/test` and `data/shapes`), with
runs shortened: epochs divided by 50 (evaluation epochs by 30) and a small network. A command
this machine cannot run (make, pip, many GPUs) is listed in NOT_RUN."""
import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from byol.cli import main

from conftest import TINY

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = {  # command prefix -> why the suite does not run it
    "make": "the set-up commands themselves: make test is this suite, CI runs make demo's recipe in test_cli",
    "source": "activates the virtual environment this suite runs in",
    "pip": "installs packages",
    "torchrun": "launches processes on several machines",
    "srun": "a SLURM job",
    "byol pretrain --config configs/imagenet.yaml --train.devices 8": "needs 8 GPUs",
}
SMALL = {"model": {"backbone_args": {"stem": "cifar", "width": 0.125}, "projection_hidden_dim": 64,
                   "prediction_hidden_dim": 64, "projection_dim": 32},
         "train": {"batch_size": 32, "knn_k": 10}, "log": {"progress": False, "tensorboard": False, "report": False}}


def code_blocks(page: Path) -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", page.read_text(), re.S)


def commands(block: str) -> list[list[str]]:
    """Each command of a shell block as argv (continued lines joined, comments dropped)."""
    joined = block.replace("\\\n", " ")
    return [argv for line in joined.splitlines() if (argv := shlex.split(line, comments=True))]


def shortened(argv: list[str]) -> list[str]:
    """The same command on tiny data: fewer epochs, a small network and at most 512 images for pretraining."""
    argv = list(argv)
    for flag, factor in (("--train.epochs", 50), ("--epochs", 30)):
        if flag in argv:
            i = argv.index(flag) + 1
            argv[i] = str(max(1, int(argv[i]) // factor))
    pretraining = argv[:2] == ["byol", "pretrain"] or "--run-type" in argv and "train" in argv
    if pretraining and not {"--help", "--print-config"} & set(argv):
        argv += [*TINY, "--log.report", "false", "--data.limit", "512"] + (
            [] if "--train.epochs" in argv else ["--train.epochs", "1"])
    if "--run-type" in argv and "fine_tune" in argv:
        argv += ["--epochs", "1"]
    if argv[:2] == ["byol", "demo"]:  # its data as made, a sample of it trained
        argv += [*TINY, "--data.limit", "512", "--log.report", "false"]
    return argv


def run_command(argv: list[str]) -> None:
    if argv[1:] in (["--version"],) or "--help" in argv:
        with pytest.raises(SystemExit) as done:
            main(argv[1:])
        assert done.value.code == 0, argv
        return
    assert main(argv[1:]) == 0, argv


def smaller_pretrain(monkeypatch):
    """byol.pretrain(dict) of a page's block, on the small network and epochs / 50."""
    import byol.training.pretrain as module

    real = module.pretrain

    def pretrain(cfg, *args, **kwargs):
        if not isinstance(cfg, dict):  # the command line's own call: shortened by its arguments
            return real(cfg, *args, **kwargs)
        cfg = copy.deepcopy(cfg)
        for section, values in SMALL.items():
            cfg.setdefault(section, {}).update(values)
        cfg["data"]["image_size"] = 32
        cfg["train"]["epochs"] = max(1, cfg["train"].get("epochs", 50) // 50)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(module, "pretrain", pretrain)


@pytest.fixture(scope="module")
def mine(demo_data, tmp_path_factory) -> Path:
    """A finished tiny run, for the pages that use `runs/mine` without making it."""
    out = tmp_path_factory.mktemp("mine") / "run"
    assert main(["pretrain", "--data.path", str(demo_data / "test"), "--train.out_dir", str(out), "--train.epochs", "1",
                 "--log.report", "false", *TINY]) == 0
    return out


def run_page(page: Path, folder: Path, demo_data: Path, mine: Path) -> tuple[list[str], list[str], list[dict]]:
    """Every code block of the page, in order, in `folder`: what ran, what was skipped and why,
    and each Python block's namespace."""
    (folder / "my_images").symlink_to(demo_data / "test")  # 100 images in 10 class folders
    (folder / "labeled").symlink_to(demo_data)
    (folder / "data").mkdir()
    (folder / "data" / "shapes").symlink_to(demo_data)
    text = page.read_text()
    if "runs/mine" in text and "--train.out_dir runs/mine" not in text:
        shutil.copytree(mine, folder / "runs" / "mine")
    ran, skipped, namespaces = [], [], []
    for lang, block in code_blocks(page):
        if lang == "python":
            if "import torchvision" in block:
                try:
                    import torchvision  # noqa: F401
                except Exception:  # noqa: BLE001 - it does not import beside some CPU builds of torch
                    skipped.append("torchvision block: torchvision cannot be imported here")
                    continue
                from byol.checkpoint import save_safetensors
                from byol.core.backbones import resnet18

                save_safetensors(resnet18().state_dict(), "backbone.safetensors")  # the default backbone
            # a block that says it builds on the blocks above ("# with ...") runs where they ran
            namespace = namespaces[-1] if block.startswith("# with ") and namespaces else {"__name__": "__docs__"}
            exec(compile(block, str(page), "exec"), namespace)
            namespaces.append(namespace)
            ran.append("python")
        elif lang == "bash":
            for argv in commands(block):
                line = shlex.join(argv)
                why = next((w for prefix, w in NOT_RUN.items() if line.startswith(prefix)), None)
                if why:
                    skipped.append(f"{line}: {why}")
                    continue
                assert argv[0] == "byol", f"{page.name}: command {line!r} is neither run nor listed in NOT_RUN"
                run_command(shortened(argv))
                ran.append(line)
    return ran, skipped, namespaces


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_of_the_page_runs(page, demo_data, mine, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    smaller_pretrain(monkeypatch)
    ran, skipped, namespaces = run_page(page, tmp_path, demo_data, mine)
    assert all(not s.startswith("byol ") or "8 GPUs" in s for s in skipped), skipped
    if page.name == "README.md":  # what the first page promises was made
        assert len(ran) >= 6 and (tmp_path / "backbone.safetensors").is_file()
        assert (tmp_path / "embeddings.files.txt").is_file() and (tmp_path / "runs" / "mine" / "summary.json").is_file()
        assert namespaces[0]["features"].shape[0] == len(namespaces[0]["files"]) == 100
    if page.name == "getting-started.md":
        assert (tmp_path / "classifier.safetensors").is_file()
    if page.name == "main-py.md":
        assert (tmp_path / "runs" / "shapes").is_dir()
    if page.name == "python.md":
        assert isinstance(namespaces[-1]["net_features"], torch.Tensor) and namespaces[1]["summary"]["steps"] > 0
    capsys.readouterr()


def test_the_readme_is_a_first_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; the rest belongs on the documentation site"


@pytest.mark.parametrize("eval_crop", ["1.0", "0.875"])
def test_every_deploy_snippet_computes_what_byol_embed_writes_on_a_jpeg_folder(eval_crop, tmp_path, monkeypatch):
    """export.md's preprocessing and its ONNX, TorchScript, ExportedProgram and plain-PyTorch
    blocks, run as written on a folder of JPEG photos of several sizes (a photo larger than the
    side is decoded at a reduced DCT scale), give byol embed's features: cosine at least
    0.9999 for every image. Squashing a photo to a square gave 0.982-0.994."""
    pytest.importorskip("onnxruntime", reason="the ONNX block needs the deploy extra: pip install -e '.[deploy]'")
    import byol

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for i, size in enumerate([(300, 200), (200, 300), (640, 480), (64, 48)] * 10):
        folder = tmp_path / "my_images" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        smooth = np.kron(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        noisy = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"{i:02d}.jpg", quality=90)
    assert main(["pretrain", "--data.path", "my_images", "--train.out_dir", "run", "--train.epochs", "0",
                 "--data.eval_crop", eval_crop, "--log.report", "false", *TINY]) == 0
    for suffix in (".safetensors", ".onnx", ".torchscript", ".pt2"):
        assert main(["export", "run/checkpoints/last.ckpt", "-o", f"backbone{suffix}"]) == 0
    namespace: dict = {"__name__": "__docs__"}
    for lang, block in code_blocks(ROOT / "docs" / "export.md"):
        if lang == "python" and ("def preprocess" in block or block.startswith("# with ")):
            exec(compile(block, "export.md", "exec"), namespace)
    expected, files = byol.embed("backbone.safetensors", "my_images")
    order = [namespace["paths"].index(f"my_images/{f}") for f in files]
    for name in ("onnx_features", "script_features", "program_features", "features"):
        got = torch.as_tensor(namespace[name])[order]
        cosine = torch.nn.functional.cosine_similarity(got, expected, dim=1)
        assert float(cosine.min()) >= 0.9999, (name, float(cosine.min()))


def test_the_site_builds_with_warnings_as_errors(tmp_path):
    pytest.importorskip("mkdocs", reason="the site's tools come with the dev extra: pip install -e '.[dev]'")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", **__import__("os").environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    config_page = (tmp_path / "site" / "reference" / "config" / "index.html").read_text()
    from byol.config import describe

    missing = [k for k in describe() if f"<code>{k}</code>" not in config_page]
    assert not missing, f"keys missing from the configuration reference: {missing}"
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "byol.core.model.BYOL" in api
    for name in ("byol.pretrain", "byol.evaluate", "byol.embed", "byol.export"):  # as the user calls them
        assert f">{name}<" in api, name
    site_reads_at_1280_px(tmp_path / "site")


# Run in each page once it has loaded: the code blocks whose text runs past their box, and the
# configuration keys of a table broken over two lines.
OVERFLOW_PROBE = """<script>window.addEventListener('load', () => {
  const code = [...document.querySelectorAll('.md-content pre > code')].filter(c => c.scrollWidth > c.clientWidth + 1)
    .map(c => c.textContent.trim().split('\\n')[0].slice(0, 60));
  const keys = [...document.querySelectorAll('.md-content table td:first-child code')]
    .filter(c => c.getClientRects().length > 1).map(c => c.textContent);
  document.body.dataset.overflow = JSON.stringify({code, keys});
});</script>"""


def site_reads_at_1280_px(site: Path) -> None:
    """Every page of the built site in headless Chromium at 1280 px: no code line cut off on the
    right (the code blocks wrap, the column is wide), no configuration key wrapped mid-word; and
    a screenshot of the export page for a person to look at (site/export-1280.png)."""
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if browser is None:
        pytest.skip("no Chromium here (Debian: apt-get install chromium; `make test` installs it when run as root)")
    from concurrent.futures import ThreadPoolExecutor

    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"]

    def probe(page: Path) -> tuple[str, dict]:
        probed = page.with_name("probe.html")
        probed.write_text(page.read_text().replace("</body>", OVERFLOW_PROBE + "</body>"))
        dom = subprocess.run([*flags, "--virtual-time-budget=3000", "--dump-dom", probed.as_uri()], capture_output=True,
                             text=True, timeout=120).stdout
        found = re.search(r'data-overflow="([^"]*)"', dom)
        assert found, f"{page}: Chromium did not run the probe"
        return str(page.relative_to(site)), json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))

    pages = [p for p in sorted(site.rglob("index.html")) if "<pre" in p.read_text() or "<table" in p.read_text()]
    with ThreadPoolExecutor(2) as pool:
        problems = {page: r for page, r in pool.map(probe, pages) if r["code"] or r["keys"]}
    assert not problems, problems
    subprocess.run([*flags, f"--screenshot={site / 'export-1280.png'}", (site / "export" / "index.html").as_uri()],
                   capture_output=True, timeout=120)
    assert (site / "export-1280.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_references_hold_every_key_command_and_option():
    from byol.cli.main import build_parser
    from byol.cli.reference import cli_reference, config_reference, subcommands
    from byol.config import describe

    config, cli = config_reference(), cli_reference()
    assert all(f"| `{key}` |" in config for key in describe())
    for name, parser in subcommands(build_parser()).items():
        assert f"## `byol {name}`" in cli
        options = [o for action in parser._actions for o in action.option_strings]
        assert all(o in cli for o in options), (name, [o for o in options if o not in cli])

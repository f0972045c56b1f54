"""The `byol` command line.

    byol pretrain --config configs/cifar10.yaml [--train.epochs 10 ...] [--resume]
    byol demo                                   generate the demo data, pretrain, compare kNN
    byol preview DATA -o views.png              what the network sees: original / view 1 / view 2
    byol layers resnet18 [--args '{...}']       layer names for model.hidden_layer
    byol evaluate knn|linear --checkpoint C --train DATA --test DATA
    byol report RUN_DIR                         plots and report.html of a pretraining run
    byol export CHECKPOINT -o backbone.safetensors
    byol embed CHECKPOINT DATA -o embeddings.npy
    byol shards FOLDER OUT --shard-size 10000   WebDataset tar shards for streaming (data.dataset: shards)
    byol cache FOLDER OUT --max-side 512        a resized copy of a folder of photos, decoded faster
    byol download cifar10 --root data           official files, MD5 checked (needs internet)
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
import sys
from pathlib import Path

import yaml

from byol.checkpoint import CheckpointError, OutputError
from byol.cli.keys import keys_help
from byol.config import ConfigError, read_yaml, recipe_names
from byol.core.backbones import BackboneError
from byol.core.model import HiddenLayerError
from byol.data.listing import DataError
from byol.evaluation.saved import PROTOCOLS
from byol.pretrained import PretrainedError

USER_ERRORS = (ConfigError, DataError, CheckpointError, HiddenLayerError, BackboneError, OutputError, PretrainedError)


def _user_errors():
    from byol.training.guard import NonFiniteLossError

    return (*USER_ERRORS, NonFiniteLossError)


def _interrupted():
    """A run stopped by SIGTERM or SIGINT after writing its checkpoint (exit 143 or 130)."""
    from byol.training.saving import Interrupted

    return Interrupted


def _json_arg(text: str) -> dict:
    try:
        value = read_yaml(text) if text else {}
    except yaml.YAMLError as e:
        raise ConfigError(f"--args: not valid YAML/JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--args must be a mapping like '{{stem: cifar}}', got {text!r}")
    return value


def band_list(text: str) -> tuple[int, ...]:
    """'3,2,1' -> (3, 2, 1): 0-based band indices."""
    try:
        bands = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0-based band numbers separated by commas, e.g. 3,2,1") \
            from None
    if any(b < 0 for b in bands):
        raise argparse.ArgumentTypeError(f"{text!r}: band numbers start at 0")
    return bands


def cmd_pretrain(args, extra) -> int:
    from byol.config import load_config
    from byol.training.pretrain import pretrain
    from byol.training.records import run_footer

    for flag, key in (("mlflow_uri", "log.mlflow_uri"), ("mlflow_experiment_name", "log.mlflow_experiment"),
                      ("mlflow_run_id", "log.mlflow_run_id")):
        if getattr(args, flag):
            extra = [*extra, f"--{key}", getattr(args, flag)]
    cfg = load_config(args.config, extra)
    if args.print_config:
        from byol.cli.keys import describe_config
        from byol.training.pretrain import plan_run

        plan = plan_run(cfg)  # what `byol pretrain` would decide: the same facts, the same decisions
        print(describe_config(plan.cfg))
        print("\n".join(plan.lines()))
        from byol.training.module import BYOLModule
        from byol.training.pretrain import cost_line

        print(cost_line(plan, BYOLModule(None, plan.cfg).model))  # the network the run would build
        return 0
    summary = pretrain(cfg, resume=args.resume)
    if summary["global_rank"] == 0:
        print("\n".join(run_footer(summary)))
    return 0


def cmd_demo(args, extra) -> int:
    from byol.config import load_config
    from byol.data.demo import generate_bands, generate_textures
    from byol.training.plan import describe_precision
    from byol.training.pretrain import pretrain
    from byol.training.records import run_footer
    from byol.training.summary import describe_reproducibility

    need(args.bands is None or args.bands >= 4, "--bands", args.bands,
         "the classes of the multi-band demo live in the bands after the first three; give at least 4")
    data = Path(args.data or ("data/demo" if args.bands is None else f"data/demo-{args.bands}-bands"))
    if not (data / ".complete").exists():  # generated once; an existing set is reused as it is
        generate_textures(data) if args.bands is None else generate_bands(data, args.bands)
    overrides = ["--data.path", str(data / "train"), "--data.val_path", str(data / "test"),
                 "--train.out_dir", args.out or ("runs/demo" if args.bands is None else f"runs/demo-{args.bands}-bands"),
                 *extra]
    cfg = load_config(["demo", *(args.config or [])], overrides)  # the user's files layer on the demo recipe
    resume = (Path(cfg.train.out_dir) / "checkpoints" / "last.ckpt").exists()
    if resume:
        print(f"{cfg.train.out_dir} has a finished or interrupted demo run; continuing it (delete the folder to "
              "start over)")
    summary = pretrain(cfg, resume=resume)
    untrained, final = summary.get("knn_untrained_top1"), summary.get("knn_final_top1")
    kind = "generated images" if args.bands is None else f"generated {args.bands}-band images"
    print(f"\nDemo: {summary['train_images']} {kind}, {cfg.train.epochs} epochs, "
          f"{summary['wall_seconds']:.0f} s, {describe_precision(summary['precision'], summary.get('precision_reason'))}")
    if untrained is not None and final is not None:
        print(f"kNN top-1 on held-out {'textures' if args.bands is None else 'images'}: untrained "
              f"{100 * untrained:.1f}%  ->  BYOL {100 * final:.1f}%")
    print(describe_reproducibility(summary))
    print("\n".join(run_footer(summary)))
    return 0


def cmd_preview(args, extra) -> int:
    from byol.config import load_config, to_dict
    from byol.evaluation.preview import write_preview
    from byol.training.pretrain import plan_run

    need(args.n >= 1, "-n", args.n, "it must be at least 1 image")
    cfg = load_config(args.config, [*extra, "--data.path", args.data])
    cfg = plan_run(cfg).cfg  # what `byol pretrain` would decide on these images: the same facts and decisions
    path = write_preview(args.data, args.output, cfg, n=args.n, seed=args.seed, bands=args.bands)
    for note in cfg.notes:
        print(note)
    for view in ("view1", "view2"):
        print(f"augment.{view}: " + ", ".join(f"{k} {shown(v)}" for k, v in to_dict(cfg)["augment"][view].items()))
    print(f"wrote {path}")
    return 0


def shown(value) -> str:
    """A setting as a line shows it: numbers to 4 significant digits (4/3 as 1.333), lists of them."""
    if isinstance(value, float):
        text = f"{value:.4g}"
        return text if any(c in text for c in ".en") else f"{text}.0"  # 1.0 stays a float to the eye
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    return str(value)


def need(ok: bool, flag: str, value, rule: str) -> None:
    """One ConfigError line for an option out of its range."""
    if not ok:
        raise ConfigError(f"{flag} {value} is out of range: {rule}")


def check_image_options(args) -> None:
    """--image-size and --channels of the commands that take them."""
    size, channels = getattr(args, "image_size", None), getattr(args, "channels", None)
    need(size is None or 1 <= size <= 4096, "--image-size", size, "it must be 1 to 4096 pixels")
    need(channels in (None, 1, 3), "--channels", channels, "it must be 1 (grayscale) or 3 (RGB)")


def cmd_layers(args, extra) -> int:
    from byol.core.backbones import build_backbone
    from byol.core.model import describe_layers

    check_image_options(args)
    net = build_backbone(args.backbone, **_json_arg(args.args))
    for name, kind, shape in describe_layers(net, args.image_size, args.channels):
        print(f"{name:40s} {kind:24s} {shape}")
    return 0


def _reader(args):
    """The saved backbone as a feature reader, with the command line's --backbone, --args,
    --hidden-layer, --image-size and --channels where given."""
    from byol.evaluation.saved import load_reader

    check_image_options(args)
    return load_reader(args.checkpoint, args.backbone, _json_arg(args.args) if args.args else None,
                       args.hidden_layer, args.image_size, args.channels, getattr(args, "train_crops", None))


def cmd_evaluate(args, extra) -> int:
    """Evaluate a frozen (or fine-tuned) backbone; prints the result JSON and saves it
    next to the checkpoint (eval-PROTOCOL.json) or to -o."""
    from byol.evaluation.saved import EvalSettings, evaluate, log_evaluation_to_mlflow

    if args.mlflow_uri:
        from byol.tracking import check_tracking_uri

        check_tracking_uri(args.mlflow_uri)
    out = output_path(args.output if args.output else Path(args.checkpoint).parent / (
        f"eval-{args.protocol}" + (f"-{args.label_fraction:g}" if args.label_fraction < 1 else "") + ".json"),
        "the result file")
    if args.save_model:
        output_path(args.save_model, "--save-model")
    settings = EvalSettings(k=args.k, temperature=args.temperature, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, label_fraction=args.label_fraction,
                            bn_momentum=args.bn_momentum, seed=args.seed, workers=args.workers)
    record = evaluate(args.checkpoint, args.protocol, args.train, args.test, args.dataset, args.data,
                      reader=_reader(args), settings=settings, save_model=args.save_model)
    from byol.evaluation.saved import describe_result

    print(describe_result(record), file=sys.stderr)  # the readable line; stdout keeps the JSON for scripts
    print(json.dumps(record))
    if args.mlflow_uri:
        log_evaluation_to_mlflow(record, args.mlflow_uri, args.mlflow_experiment_name, args.mlflow_run_id)
    write_output(out, lambda f: f.write(json.dumps(record, indent=1).encode()), "the result")
    return 0


def cmd_report(args, extra) -> int:
    from byol.evaluation.report import write_report

    try:
        path = write_report(args.run_dir)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    print(f"wrote {path}")
    return 0


def output_path(path: str | Path, what: str) -> Path:
    """`path`, checked writable before any work is done (one line if not); missing folders on the
    way are made when the file is written, so a command that fails leaves none behind."""
    from byol.checkpoint import check_output_file, temporary_name

    path = Path(path)
    try:
        check_output_file(path)
    except OutputError as e:
        raise ConfigError(f"{what}: {e}") from None
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    try:
        if not folder.is_dir():
            raise NotADirectoryError(20, f"{folder} is not a folder")
        temporary_name(Path(folder) / path.name).unlink()  # a real write: access() misses read-only mounts
    except OSError as e:
        raise ConfigError(f"{what} {str(path)!r} cannot be written ({e.strerror or e}): choose another place") from None
    return path


def write_output(path: Path, write, what: str) -> None:
    """byol.checkpoint.atomic_write, with a failure (a full disk) said in one line."""
    write_outputs({path: write}, what)


def write_outputs(contents: dict, what: str) -> None:
    """Each {path: bytes, or write(binary file)} staged in full before any is renamed into place
    (atomic_path): all are written or none, and a failure (a full disk) is one line."""
    from contextlib import ExitStack

    from byol.checkpoint import atomic_path

    try:
        with ExitStack() as stack:
            for path, content in contents.items():
                tmp = stack.enter_context(atomic_path(path))
                with open(tmp, "wb") as f:
                    f.write(content) if isinstance(content, bytes) else content(f)
    except OSError as e:
        raise ConfigError(f"could not write {what} {', '.join(repr(str(p)) for p in contents)} ({e.strerror or e}); "
                          "nothing was written there: free space or choose another place") from None


def cmd_export(args, extra) -> int:
    from byol.evaluation.deploy import export, export_hub_folder

    if args.hub_folder:
        if args.output is not None:
            raise ConfigError(f"give -o {args.output!r} or --hub-folder {args.hub_folder!r}, not both: --hub-folder "
                              "writes its own model.safetensors, config.json and README.md")
        folder = export_hub_folder(args.checkpoint, args.hub_folder)
        print(f"wrote {folder}/ (model.safetensors, config.json, README.md: load it as its README says)")
        return 0
    out = output_path(args.output or EXPORT_DEFAULT, "the exported weights")
    try:
        info = export(args.checkpoint, out, args.format, args.normalization, args.backbone,
                      _json_arg(args.args) if args.args else None)
    except OSError as e:  # the checkpoint was read (CheckpointError otherwise): the write failed
        raise ConfigError(f"could not write the export {str(out)!r} ({e.strerror or e}); nothing was written "
                          "there: free space or choose another place") from None
    if info["format"] == "safetensors":
        print(f"wrote {out} (load with net.load_state_dict(safetensors.torch.load_file({str(out)!r})))")
    else:
        print(f"wrote {out} ({info['format']}; input {info['input']}, normalisation {info['normalization']}; "
              f"preprocessing: {info['preprocessing']}; largest difference from PyTorch on the check's images "
              f"{info['max_abs_difference']:.2g})")
    return 0


EXPORT_DEFAULT = "backbone.safetensors"


def cmd_embed(args, extra) -> int:
    import numpy as np

    from byol.evaluation.saved import embed

    out = output_path(args.output, "the embeddings file")
    listing = out.with_suffix(".files.txt")
    output_path(listing, "the list of files")
    if args.maps is not None:
        layers = [name.strip() for name in args.maps.split(",") if name.strip()]
        if not layers:
            raise ConfigError(f"--maps {args.maps!r} names no layer; give layer names, comma-separated (byol layers "
                              "lists them), or leave --maps out for the pooled features")
        if out.suffix != ".npz":
            raise ConfigError(f"-o {str(out)!r}: --maps writes one array per layer into an .npz; name it NAME.npz")
        from byol.evaluation.saved import embed_maps

        maps, files = embed_maps(args.checkpoint, args.data, layers, reader=_reader(args))
        buffer = io.BytesIO()
        np.savez(buffer, **{name: value.numpy() for name, value in maps.items()})
        write_outputs({out: buffer.getvalue(), listing: "".join(f"{name}\n" for name in files).encode()},
                      "the feature maps and their list of files")
        shapes = ", ".join(f"{name} {tuple(value.shape)}" for name, value in maps.items())
        print(f"wrote {out}: {shapes} of {args.data}; row i is the file on line i of {listing}")
        return 0
    feats, files = embed(args.checkpoint, args.data, reader=_reader(args))
    broken = [name for name in files if "\n" in name or "\r" in name]
    if broken:  # row i is line i of the list: a name that spans two lines would shift every later row
        raise ConfigError(f"{len(broken)} file name(s) in {args.data!r} hold a line break (e.g. {broken[0]!r}), "
                          f"which {listing.name} cannot list one per line; rename them")
    buffer = io.BytesIO()  # written through Python's own write, whose error names the cause (numpy's gives byte counts)
    np.save(buffer, feats.numpy())
    contents = {out: buffer.getvalue(), listing: "".join(f"{name}\n" for name in files).encode()}
    places = geo_references(args.data, files)
    if places:  # GeoTIFFs: where each row's tile lies, beside the rows
        contents[output_path(out.with_suffix(".geo.json"), "the tiles' georeferences")] = json.dumps(
            places, indent=1).encode()
    write_outputs(contents, "the embeddings and their list of files")
    print(f"wrote {out}: {tuple(feats.shape)} embeddings of {args.data}; row i is the file on line i of {listing}"
          + (f"; where each GeoTIFF lies: {out.with_suffix('.geo.json')}" if places else ""))
    return 0


def geo_references(data: str, files: list[str]) -> dict:
    """{file: its georeference} for the GeoTIFFs among `files` of the folder `data`
    (byol.data.bands.geo_reference); empty for an archive or where none is one."""
    from byol.data.bands import geo_reference
    from byol.data.listing import DECODE_ERRORS

    if not Path(data).is_dir():
        return {}
    out = {}
    for name in files:
        if name.lower().endswith((".tif", ".tiff")):
            try:
                ref = geo_reference(str(Path(data) / name))
            except DECODE_ERRORS:
                continue
            if ref is not None:
                out[name] = ref
    return out


def cmd_shards(args, extra) -> int:
    from byol.data.shards import write_shards

    need(args.shard_size >= 1, "--shard-size", args.shard_size, "it must be at least 1 image")
    index = write_shards(args.folder, args.out, args.shard_size, args.seed)
    shards = json.loads(index.read_text())["shards"]
    print(f"wrote {len(shards)} shards, {sum(s['count'] for s in shards)} images, to {args.out} "
          f"(train with --data.dataset shards --data.path {args.out})")
    return 0


def cmd_cache(args, extra) -> int:
    from byol.data.cache import write_cache

    state = write_cache(args.folder, args.out, args.max_side, args.quality)
    print(f"cached {state['images']} images of {args.folder} in {args.out}, longer side at most {args.max_side} px: "
          f"{state['resized']} resized, {state['copied']} copied as they were, {state['kept']} unchanged since the last "
          f"run, {state['removed']} removed (source gone), {state['skipped']} left out (unreadable or no regular file). "
          f"Train with --data.path {args.out}")
    return 0


def cmd_download(args, extra) -> int:
    from byol.data.datasets import download

    print(f"downloaded {args.name} into {download(args.name, args.root)} (MD5 checked)")
    return 0


class WithDefaults(argparse.HelpFormatter):
    """Help lines that end with the option's default, where it has one."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default not in (None, "", False, argparse.SUPPRESS) and "default" not in text and action.option_strings:
            text += f" (default: {action.default})"
        return text


def help_config(argv: list[str]):
    """(config, title) for `byol pretrain --config NAME --help`: the keys as those files set them."""
    from byol.config import load_config

    configs = [a.split("=", 1)[1] for a in argv if a.startswith("--config=")]
    configs += [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "--config"]
    if not configs:
        return None, "defaults"
    try:
        return load_config(configs), f"values with --config {' --config '.join(configs)}"
    except ConfigError as e:
        return None, f"defaults ({e})"


def build_parser(help_for: tuple = (None, "defaults")) -> argparse.ArgumentParser:
    from byol.version import __version__

    p = argparse.ArgumentParser(prog="byol", description="BYOL self-supervised pretraining for any PyTorch network",
                                epilog="The arguments of the earlier `python main.py --run-type ...` command line are "
                                       "accepted too: byol --run-type train|fine_tune|eval --dataset-type ... "
                                       "--dataset-path ... (documentation: 'The main.py --run-type command line')")
    p.add_argument("--version", action="version", version=f"byol {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("pretrain", help="pretrain a network with BYOL (overrides: --section.key value)",
                       epilog=keys_help(*help_for), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--config", action="append",
                   help=f"a YAML file, or a packaged recipe by name ({', '.join(recipe_names())}); "
                        "repeat to layer files")
    s.add_argument("--resume", action="store_true", help="continue from train.out_dir/checkpoints/last.ckpt "
                                                          "(with a larger --train.epochs: continue to the new end)")
    s.add_argument("--print-config", action="store_true",
                   help="print the settings this run would use (with where each came from) and its plan "
                        "(images, steps, image size, precision), then exit without training")
    s.add_argument("--mlflow-uri", help="log to MLflow at this tracking URI (same as --log.mlflow_uri)")
    s.add_argument("--mlflow-experiment-name", help="MLflow experiment (default byol_experiment)")
    s.add_argument("--mlflow-run-id", help="MLflow run to log into")
    s.set_defaults(func=cmd_pretrain)

    add_setup_commands(sub)
    add_evaluation_commands(sub)
    add_file_commands(sub)
    return p


def add_setup_commands(sub) -> None:
    """demo, preview, layers: trying byol and choosing its settings."""
    s = sub.add_parser("demo", help="generate the textures demo data, pretrain on it, report kNN",
                       formatter_class=WithDefaults)
    s.add_argument("--data", default=None, help="where the generated demo images go (made once, then reused); "
                                                "default data/demo, with --bands N data/demo-N-bands")
    s.add_argument("--out", default=None, help="the run folder (an existing run is continued); default runs/demo, "
                                               "with --bands N runs/demo-N-bands")
    s.add_argument("--bands", type=int, default=None,
                   help="a multi-band demo instead: N-band 16-bit images (.npy) whose classes differ only in the "
                        "bands after the first three, read at full precision")
    s.add_argument("--config", action="append", help="a YAML file or recipe name layered on the demo recipe; "
                                                     "repeat to layer more (any --section.key value works too)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("preview", help="write a PNG grid: original / view 1 / view 2",
                       formatter_class=WithDefaults)
    s.add_argument("data", help="a folder or .tar of images")
    s.add_argument("-o", "--output", default="views.png", help="the PNG to write")
    s.add_argument("--config", action="append", help="a YAML file or recipe name whose augment settings to show; "
                                                     "repeat to layer (any --section.key value works too)")
    s.add_argument("-n", type=int, default=8, help="how many images")
    s.add_argument("--seed", type=int, default=0, help="seed of the image choice and the augmentations")
    s.add_argument("--bands", type=band_list, default=None,
                   help="full-precision data: the three bands (0-based, after data.bands) shown as red, green and "
                        "blue, e.g. 3,2,1, or one shown in grey; default the first three")
    s.set_defaults(func=cmd_preview)

    s = sub.add_parser("layers", help="list a backbone's layers (names for model.hidden_layer)",
                       formatter_class=WithDefaults)
    s.add_argument("backbone", help="resnet18/34/50, or an import path such as mynets:MyNet (found in the current "
                                    "folder or on PYTHONPATH)")
    s.add_argument("--args", default="", help="backbone keyword arguments, YAML/JSON mapping")
    s.add_argument("--image-size", type=int, default=32, help="size of the probe image the shapes are measured with")
    s.add_argument("--channels", type=int, default=3, help="channels of the probe image")
    s.set_defaults(func=cmd_layers)



def weights_args(s) -> None:
    """Options of commands that read saved weights (evaluate, embed)."""
    s.add_argument("--backbone", help="backbone name or import path (needed for .safetensors "
                                      "and for checkpoints made with a user class)")
    s.add_argument("--args", default="", help="backbone keyword arguments")
    s.add_argument("--hidden-layer", help="layer whose output is the feature (default: the checkpoint's)")
    s.add_argument("--image-size", type=int, help="network input size (default: the checkpoint's or export's)")
    s.add_argument("--channels", type=int, help="1 or 3 (default: the checkpoint's or export's)")


def add_evaluation_commands(sub) -> None:
    """evaluate and embed: what saved weights are worth."""
    s = sub.add_parser("evaluate", help="evaluate a pretrained backbone on labeled data",
                       formatter_class=WithDefaults)
    s.add_argument("protocol", choices=PROTOCOLS,
                   help="knn; linear (on features computed once); linear-aug (the paper's: frozen "
                        "backbone, crop+flip images); logistic (L-BFGS, L2 swept); finetune (whole network)")
    s.add_argument("--checkpoint", required=True, help=".ckpt from pretrain or exported .safetensors")
    s.add_argument("--train", help="labeled training images (folder or tar)")
    s.add_argument("--test", help="labeled test images (folder or tar)")
    s.add_argument("--dataset", help="a standard data set instead: cifar10, stl10, emnist-letters, ...")
    s.add_argument("--data", help="with --dataset: where its files are")
    s.add_argument("-k", type=int, help="knn: neighbours voting (default: the field's standard 200, or a tenth of a "
                                        "smaller labeled training set)")
    s.add_argument("--temperature", type=float, default=0.1, help="knn: temperature of the weighted vote")
    s.add_argument("--epochs", type=int, default=100, help="linear, linear-aug, finetune: training epochs")
    s.add_argument("--lr", type=float, default=0.1, help="linear, linear-aug, finetune: learning rate (SGD, cosine)")
    s.add_argument("--batch-size", type=int, default=256, help="linear-aug, finetune: training batch")
    s.add_argument("--label-fraction", type=float, default=1.0, help="semi-supervised: 0.01 or 0.1 of the labels")
    s.add_argument("--bn-momentum", type=float, help="finetune: batch-norm momentum of the backbone")
    s.add_argument("--seed", type=int, default=0, help="seed of the label subset and of training")
    s.add_argument("-o", "--output", help="write the result JSON here (default: next to the checkpoint)")
    s.add_argument("--save-model", help="linear-aug/finetune: write the trained network + head here (.safetensors)")
    s.add_argument("--train-crops", choices=("whole", "square"),
                   help="linear-aug/finetune: training crops from each whole image of the --train folder (decoded "
                        "per epoch in workers), or from the decoded square in memory (default: whole where "
                        "pretraining used data.large_images full)")
    s.add_argument("--workers", type=int, help="with whole-image crops: DataLoader workers (default: up to 8)")
    s.add_argument("--mlflow-uri", help="also log the result to MLflow at this tracking URI")
    s.add_argument("--mlflow-experiment-name", default="byol_experiment")
    s.add_argument("--mlflow-run-id", help="nest the evaluation under this (pretraining) MLflow run")
    weights_args(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("embed", help="write embeddings of a folder of images to .npy",
                       formatter_class=WithDefaults)
    s.add_argument("checkpoint", help=".ckpt from pretrain or exported .safetensors")
    s.add_argument("data", help="a folder or .tar of images")
    s.add_argument("-o", "--output", default="embeddings.npy",
                   help="the (N, D) array; the file of each row goes beside it (NAME.files.txt)")
    s.add_argument("--maps", metavar="LAYER[,LAYER]",
                   help="instead: the named layers' outputs, not pooled ((N, C, H, W) maps for a detection or "
                        "segmentation head), one array per layer in an .npz (-o NAME.npz)")
    weights_args(s)
    s.set_defaults(func=cmd_embed)


def add_file_commands(sub) -> None:
    """report, export, shards, cache, download: files a user keeps or makes."""
    s = sub.add_parser("report", help="(re)build a run folder's plots and report.html")
    s.add_argument("run_dir", help="the run folder (train.out_dir)")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("export", help="write the online backbone as .safetensors weights, or as ONNX, TorchScript "
                                      "or an ExportedProgram that deploys without byol", formatter_class=WithDefaults)
    s.add_argument("checkpoint", help="a pretraining checkpoint (.ckpt); for the deployable formats also an exported "
                                      ".safetensors")
    s.add_argument("-o", "--output", help=f"the file: .safetensors (weights under your network's key names), .onnx, "
                                          f".torchscript, .pt2 (default: {EXPORT_DEFAULT})")
    s.add_argument("--format", choices=("safetensors", "onnx", "torchscript", "exported-program"),
                   help="default: from the output's suffix")
    s.add_argument("--normalization", choices=("inside", "outside"), default="inside",
                   help="deployable formats: the run's mean/std applied inside the graph (input: images in [0, 1]), "
                        "or left to the caller (stated in the file's metadata)")
    s.add_argument("--backbone", help="a user class by import path, for a checkpoint made with one")
    s.add_argument("--args", default="", help="backbone keyword arguments")
    s.add_argument("--hub-folder", metavar="DIR", help="instead of -o: a folder in the layout of timm's models on the "
                                                       "Hugging Face Hub (model.safetensors, config.json, README.md)")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("shards", help="write an image folder as WebDataset tar shards for streaming")
    s.add_argument("folder", help="ImageFolder (class sub-folders) or unlabeled folder, or a .tar of one")
    s.add_argument("out", help="the folder the shards and their index go to")
    s.add_argument("--shard-size", type=int, default=10000, help="images per shard")
    s.add_argument("--seed", type=int, default=0, help="seed of the shuffle before sharding")
    s.set_defaults(func=cmd_shards)

    s = sub.add_parser("cache", help="a resized copy of an image folder (longer side at most --max-side), same file "
                                     "names and class folders: photos decode several times faster",
                       formatter_class=WithDefaults)
    s.add_argument("folder", help="ImageFolder (class sub-folders) or unlabeled folder of images")
    s.add_argument("out", help="the cache folder (new, empty, or an unfinished cache of the same folder to complete)")
    s.add_argument("--max-side", type=int, default=512, help="the longer side of the copies, in px")
    s.add_argument("--quality", type=int, default=95, help="JPEG / WebP quality of the resized copies")
    s.set_defaults(func=cmd_cache)

    s = sub.add_parser("download", help="fetch a standard data set's official files (MD5 checked)")
    s.add_argument("name", help="cifar10, cifar100, stl10, mnist or emnist")
    s.add_argument("--root", default="data", help="where the files go (default data)")
    s.set_defaults(func=cmd_download)


def main(argv: list[str] | None = None) -> int:
    from byol.wording import command_line

    command_line()  # messages name options as the command line spells them (--resume, --train.epochs)
    argv = sys.argv[1:] if argv is None else argv
    if any(a == "--run-type" or a.startswith("--run-type=") for a in argv):  # `main.py --run-type ...` arguments
        from byol.cli.compat import translate

        try:
            argv = translate(argv)
        except ConfigError as e:
            print(f"byol --run-type: error: {e}", file=sys.stderr)
            return 2
        print("byol " + shlex.join(argv), flush=True)  # the output folder is made only once there is a result
    wants_help = argv[:1] == ["pretrain"] and ("-h" in argv or "--help" in argv)
    parser = build_parser(help_config(argv) if wants_help else (None, "defaults"))
    args, extra = parser.parse_known_args(argv)
    if extra and args.command not in ("pretrain", "demo", "preview"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra)
    except _user_errors() as e:
        print(f"byol {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"byol {args.command}: interrupted", file=sys.stderr)
        return 130
    except _interrupted() as e:  # evaluated only when an exception gets here
        print(f"byol {args.command}: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())

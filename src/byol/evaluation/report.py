"""The run report: PNG plots and one `report.html` in a pretraining run's folder.

    byol report RUN_DIR        (pretrain writes it at the end of every run; log.report)

Reads only what the run left on disk: config.yaml, summary.json, knn.json, csv*/metrics.csv
(a resumed run's logs in order) and embeddings.npz (features of held-out labeled images from
the final backbone, written by the kNN monitor). Plots: loss, learning rate, tau, kNN
accuracy, the projection-std collapse monitor, a t-SNE map of the embeddings coloured by
class, and the augmentation preview.
"""
from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import numpy as np
import yaml

from byol.checkpoint import atomic_write, atomic_write_text

PLOTS = {  # file: (title, CSV column, y label)
    "loss.png": ("BYOL loss", "train/loss_step", "loss (sum of both directions, 0..8)"),
    "lr.png": ("Learning rate", "train/lr", "learning rate"),
    "tau.png": ("Target EMA tau (cosine schedule, paper eq. 3.2)", "train/tau", "tau"),
    "projection_std.png": ("Collapse monitor: std of normalised projections", "train/projection_std", "std"),
}


REPORT_FILES = ("report.html", *PLOTS, "knn.png", "embedding_map.png", "preview.png")  # what write_report writes


def read_metrics(run: Path) -> dict[str, list[tuple[int, float]]]:
    """{column: [(step, value)]} from csv/metrics.csv and any csv-resumeN/metrics.csv after it;
    a later file wins where steps repeat (a resumed run redoes the steps after its checkpoint)."""
    files = sorted(run.glob("csv*/metrics.csv"), key=lambda p: (p.parent.name != "csv", len(p.parent.name),
                                                               p.parent.name))
    series: dict[str, dict[int, float]] = {}
    bad: list[str] = []
    for f in files:
        with open(f, newline="", errors="replace") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    step = int(float(row.get("step") or 0))
                    values = {k: float(v) for k, v in row.items()
                              if k not in ("step", "epoch", None) and v not in ("", None)}
                except (TypeError, ValueError):  # a damaged row: left out and counted, the rest still drawn
                    bad.append(f"{f.relative_to(run)} line {line}")
                    continue
                for key, value in values.items():
                    series.setdefault(key, {})[step] = value
    out = {k: sorted(v.items()) for k, v in series.items()}
    if bad:
        out[BAD_ROWS] = bad
    return out


BAD_ROWS = "unreadable rows"  # read_metrics' entry for rows it left out


def read_run_json(path: Path, default, check) -> object:
    """A run file's JSON (summary.json, knn.json), or `default` when it is missing; a file that is
    not JSON, or not of the shape `check` accepts, is one ConfigError naming it."""
    from byol.config import ConfigError

    if not path.exists():
        return default
    try:
        value = json.loads(path.read_text(errors="replace"))
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); restore it, or delete it to draw the report "
                          "without it") from None
    problem = check(value)
    if problem:
        raise ConfigError(f"{path}: {problem}; restore it, or delete it to draw the report without it")
    return value


def knn_problem(value) -> str | None:
    """What is wrong with a knn.json: a list of {epoch, top1, top5} with numbers."""
    if not isinstance(value, list):
        return "not a list of evaluations"
    for i, entry in enumerate(value):
        missing = [k for k in ("epoch", "top1", "top5")
                   if not isinstance(entry, dict) or not isinstance(entry.get(k), (int, float))]
        if missing:
            return f"entry {i} has no number for {', '.join(missing)}"
    return None


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    ax.grid(alpha=0.3)
    return plt, fig, ax


def plot_series(points: list[tuple[int, float]], title: str, ylabel: str, out: Path,
                reference: float | None = None) -> Path:
    finite = [(s, v) for s, v in points if math.isfinite(v)]
    if not finite:
        raise ValueError("every value is inf or NaN")
    plt, fig, ax = _figure()
    steps, values = zip(*finite)
    ax.plot(steps, values, lw=1.2)
    if reference is not None:
        ax.axhline(reference, color="grey", ls="--", lw=1, label=f"healthy 1/sqrt(d) = {reference:.3f}")
        ax.legend()
    if len(finite) < len(points):
        title += f" ({len(points) - len(finite)} inf/NaN values left out)"
    ax.set(title=title, xlabel="step", ylabel=ylabel)
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return out


def plot_knn(history: list[dict], out: Path) -> Path:
    plt, fig, ax = _figure()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [100 * h["top1"] for h in history], "o-", label="top-1")
    ax.plot(epochs, [100 * h["top5"] for h in history], "s--", label="top-5")
    ax.set(title="kNN accuracy on held-out images (epoch 0: untrained)", xlabel="epoch", ylabel="accuracy %")
    ax.legend()
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return out


def plot_embedding_map(features: np.ndarray, labels: np.ndarray, classes: list[str], out: Path,
                       seed: int = 0) -> Path:
    """t-SNE (van der Maaten & Hinton 2008, scikit-learn) of the features, coloured by class."""
    from sklearn.manifold import TSNE

    x = features.astype(np.float64)  # float32 norms of diverged features overflow
    if len(x) < 4:
        raise ValueError(f"only {len(x)} held-out images; a map needs at least 4")
    if not np.isfinite(x).all():
        raise ValueError("the embeddings hold inf or NaN (the network diverged); no map")
    x = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    perplexity = float(min(30.0, max(1.0, (len(x) - 1) / 3)))  # scikit-learn needs it below the sample count
    xy = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(x)
    plt, fig, ax = _figure()
    fig.set_size_inches(6, 5)
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for c in np.unique(labels):
        m = labels == c
        name = classes[c] if c < len(classes) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=6, color=cmap(int(c) % cmap.N), label=name)
    if len(classes) <= 20:
        ax.legend(markerscale=3, fontsize=7, loc="best")
    ax.set(title=f"t-SNE of {len(x)} held-out embeddings", xticks=[], yticks=[])
    fig.tight_layout()
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return out


def save_embeddings(features, labels, classes: list[str], out: Path, limit: int = 2000, seed: int = 0) -> None:
    """Keep up to `limit` held-out embeddings (a fixed random subset) for the report's map."""
    import torch

    n = features.shape[0]
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    atomic_write(out, lambda f: np.savez_compressed(
        f, features=features[keep.to(features.device)].float().cpu().numpy(),
        labels=labels[keep.to(labels.device)].cpu().numpy(), classes=np.array(classes)))


def write_preview_for(run: Path, cfg) -> Path | None:
    """The augmentation preview of the run's own training images (None for video clips and
    pairs of places)."""
    from byol.evaluation.preview import write_preview

    d = cfg.data
    if d.dataset in ("video", "pairs") or not d.path or not Path(d.path).exists():
        return None
    if d.dataset == "folder":
        return write_preview(d.path, str(run / "preview.png"), cfg)
    from byol.config import input_channels
    from byol.data.datasets import load_dataset, match_channels

    images = match_channels(load_dataset(d.dataset, d.path, "test"), input_channels(d)).images
    return write_preview(None, str(run / "preview.png"), cfg, images=images)


def _flatten(cfg: dict) -> list[tuple[str, str]]:
    return [(f"{s}.{k}", json.dumps(v)) for s, values in cfg.items() for k, v in values.items()]


def write_report(run_dir: str | Path) -> Path:
    """Draw every plot the run's files allow and write report.html; returns its path."""
    from byol.config import ConfigError, from_dict, read_yaml, yaml_problem

    run = Path(run_dir)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{run} is not a run folder: it has no config.yaml (byol pretrain writes one)")
    try:
        cfg_dict = read_yaml((run / "config.yaml").read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{run / 'config.yaml'}: not valid YAML at {yaml_problem(e)}") from None
    cfg = from_dict(cfg_dict)
    summary = read_run_json(run / "summary.json", {}, lambda v: None if isinstance(v, dict) else "not a JSON object")
    knn = read_run_json(run / "knn.json", [], knn_problem)
    figures, left_out = draw_figures(run, cfg, knn)
    out = run / "report.html"
    atomic_write_text(out, report_page(run, summary, summary_rows(run, summary, knn), figures, left_out, cfg_dict))
    return out


def draw_figures(run: Path, cfg, knn: list[dict]) -> tuple[list[tuple[str, str]], list[str]]:
    """([(file name, caption)] of the figures drawn, [notes on those the data could not give]);
    a figure that fails is left out with a note: the report never fails a run."""
    metrics = read_metrics(run)
    figures: list[tuple[str, str]] = []
    left_out: list[str] = []
    if metrics.get(BAD_ROWS):
        rows = metrics.pop(BAD_ROWS)
        left_out.append(f"{len(rows)} unreadable row(s) of the metrics left out of the plots (e.g. {rows[0]})")

    def draw(caption: str, make) -> None:
        try:
            path = make()  # its path, or None when there is nothing to draw
        except Exception as e:  # noqa: BLE001 - whatever went wrong, the rest of the report stands
            left_out.append(f"{caption}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            return
        if path is not None:
            figures.append((Path(path).name, caption))

    healthy = 1.0 / cfg.model.projection_dim ** 0.5
    for name, (title, column, ylabel) in PLOTS.items():
        if metrics.get(column):
            draw(title, lambda name=name, title=title, column=column, ylabel=ylabel: plot_series(
                metrics[column], title, ylabel, run / name,
                reference=healthy if column == "train/projection_std" else None))
    if knn:
        draw("kNN accuracy", lambda: plot_knn(knn, run / "knn.png"))
    if (run / "embeddings.npz").exists():
        def embedding_map():
            e = np.load(run / "embeddings.npz")
            return plot_embedding_map(e["features"], e["labels"], [str(c) for c in e["classes"]],
                                      run / "embedding_map.png", cfg.train.seed)
        draw("t-SNE map of held-out embeddings, coloured by class", embedding_map)
    draw("Augmentation preview: originals, view 1, view 2", lambda: write_preview_for(run, cfg))
    return figures, left_out


def summary_rows(run: Path, summary: dict, knn: list[dict]) -> list[tuple[str, object]]:
    """The run's figures as (name, value) rows: length, time, loss, kNN, saved evaluations, and what
    reproduces them (the summary's reproducibility: versions, processor, threads, precision and
    why, processes)."""
    rows = [("epochs", summary.get("epochs")), ("steps", summary.get("steps")),
            ("training images", summary.get("train_images")), ("precision", summary.get("precision")),
            ("wall time (s)", summary.get("wall_seconds")), ("final loss (epoch mean)", summary.get("final_loss"))]
    segments = summary.get("wall_seconds_segments") or []
    if len(segments) > 1:
        rows.append(("wall time of each segment (s), resumed", ", ".join(f"{s:.0f}" for s in segments)))
    if knn:
        untrained = knn[0]["top1"] if knn[0]["epoch"] == 0 else None
        rows += [("kNN top-1 untrained", untrained), ("kNN top-1 final", knn[-1]["top1"]),
                 ("kNN top-5 final", knn[-1]["top5"])]
    for f in sorted(run.glob("checkpoints/eval-*.json")):
        r = json.loads(f.read_text())
        rows.append((f"{r['protocol']} top-1 ({f.name})", r["top1"]))
    for key, value in (summary.get("reproducibility") or {}).items():  # what the figures were made with
        rows.append((f"reproducibility: {key}", value))
    return rows


def _cell(key: str, v) -> str:
    if v is None:
        return "-"
    if "top-" in key:
        return f"{100 * v:.2f}%"
    return html.escape(f"{v:.4g}" if isinstance(v, float) else str(v))


# After load, the page states how many of its images decoded (and names the broken ones).
_IMAGE_CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images], bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0));
  document.body.dataset.imagesLoaded = (imgs.length - bad.length) + '/' + imgs.length;
  if (bad.length) { const p = document.getElementById('broken'); p.hidden = false;
    p.textContent = 'Missing images: ' + bad.map(i => i.getAttribute('src')).join(', '); }
});
</script>"""


def report_page(run: Path, summary: dict, rows, figures, left_out, cfg_dict: dict) -> str:
    """report.html: the verdict, notes, left-out figures, the figures table, the plots, settings."""
    verdict = (summary.get("verdict") or {}).get("message")
    body = [f"<h1>BYOL run: {html.escape(str(run))}</h1>",
            "<p id='broken' hidden style='color:#b00'></p>"]
    if verdict:
        body.append(f"<p id='verdict'><b>{html.escape(verdict)}</b></p>")
    body += [f"<p class='note'>{html.escape(n)}</p>" for n in summary.get("notes", [])]
    body += [f"<p class='left-out'>Left out: {html.escape(n)}</p>" for n in left_out]
    body.append("<h2>Figures</h2><table>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{_cell(k, v)}</td></tr>"
                                                    for k, v in rows) + "</table>")
    body += [f"<figure><img src='{html.escape(name)}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}"
             "</figcaption></figure>" for name, cap in figures]
    body.append("<h2>Settings</h2><table>" + "".join(
        f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
        for k, v in _flatten(cfg_dict)) + "</table>")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>BYOL report: {html.escape(run.name)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}} figure{{display:inline-block;margin:8px}}
img{{max-width:480px}} th{{text-align:left;padding-right:1em;font-weight:normal;color:#555}}</style></head>
<body>
{chr(10).join(body)}
{_IMAGE_CHECK}
</body></html>
"""

"""The one script from result rows to what the documentation shows. Reads the committed rows in
benchmarks/results/*.jsonl and writes, each between its markers or as a whole file:

- docs/benchmarks.md: the quick-start table (one row per run, with its kNN curve and verdict), the
  candidates tried on validation images (quickstart-val.jsonl), the loader tables (images/s of
  each input pipeline on photographs, loader.jsonl), the in-memory step time (step_time.jsonl)
  and the continued-pretraining table;
- docs/beyond-rgb.md: all bands against RGB only (bands.jsonl), the screen of the band
  brightness and contrast defaults (band_defaults.jsonl) and the multi-band loader rows;
- README.md: the results table (each data set and run length: seeds, kNN before -> after, verdicts, time);
- src/byol/training/budget.json: the budget advice's measurements (byol.training.budget.summarize);
- src/byol/training/crop_speed.json and the benchmarks page's crop table: where photos' crops are
  cut faster end to end on each CPU kind (crop_on.jsonl; data.crop_on auto reads it on a CPU);
- docs/images/quickstart_knn.png: kNN top-1 against steps for every quick-start run, one panel per kind of data;
- docs/benchmarks.md's side-by-side table (compare.jsonl: this project, lightly and byol-pytorch on
  the same images, by compare.summarize and time_to_accuracy.summarize, the one way each) and
  docs/images/compare_knn.png: kNN top-1 against pretraining seconds for each library.

    python benchmarks/results.py            # rewrite them from the rows
    python benchmarks/results.py --check    # change nothing; exit 1 if a table or budget.json is stale

No figure in the pages is typed by hand: add rows (benchmarks/quickstart.py --out ...), then run this.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BUDGET = ROOT / "src" / "byol" / "training" / "budget.json"
CROP_SPEED = ROOT / "src" / "byol" / "training" / "crop_speed.json"
PLOT = ROOT / "docs" / "images" / "quickstart_knn.png"
COMPARE_PLOT = ROOT / "docs" / "images" / "compare_knn.png"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}: start (benchmarks/results.py writes this) -->", f"<!-- {name}: end -->"


def read_rows(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"results: {path}, line {number}: not JSON ({e.msg}); fix or remove that line")
    return rows


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def run_key(r: dict) -> tuple:
    return r["data"], r["side"], r["train_images"], r["epochs"]


def in_order(rows: list[dict]) -> list[dict]:
    """The rows by kind of data, run length and seed: the order of every table and the plot."""
    return sorted(rows, key=lambda r: (*run_key(r), r["seed"]))


def quickstart_runs(rows: list[dict]) -> str:
    """Every quick-start run: its curve (kNN top-1 on its held-out images after each check), the
    verdict and each run's first beat of its own untrained network (budget.first_beat: by more
    than its held-out images can tell from chance, or by the paired test at the end)."""
    from curves import first_beat

    lines = ["| data | side | training images | epochs (steps) | seed | kNN top-1 by step (untrained first) "
             "| verdict (McNemar p) | first beat at step | time | precision, CPU | load average after (15 min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in in_order(rows):
        curve = ", ".join(f"{step}: {100 * top1:.1f}" for step, top1 in r["curve"])
        beat = first_beat(r["curve"], r["held_out_images"], r["outcome"])
        lines.append(f"| {r['data']} | {r['side']} px | {r['train_images']:,} | {r['epochs']} ({r['steps']}) "
                     f"| {r['seed']} | {curve} | {r['outcome']} ({r['p_value']:.2g}) "
                     f"| {beat if beat is not None else 'never'} | {r['wall_seconds']:.0f} s "
                     f"| {r['precision']}, {r['cpu_kind']} "
                     f"| {r['load_average_after'][2] if 'load_average_after' in r else 'not recorded'} |")
    return "\n".join(lines)


def added_settings(r: dict) -> str:
    """What a run set beyond the quick start command: the options after its --train.seed."""
    import shlex

    words = shlex.split(r["command"])
    return " ".join(words[words.index("--train.seed") + 2:]) if "--train.seed" in words else ""


def quickstart_candidates(rows: list[dict]) -> str:
    """The quick start with candidate settings, on validation images (other images of the same
    classes, picked with another seed; seeds never reported as test figures)."""
    lines = ["| settings added to the quick start | data | side | training images (pick seed) | epochs (steps) | seed "
             "| kNN top-1 by step (untrained first) | verdict (McNemar p) |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (added_settings(r), *run_key(r), r["seed"])):
        curve = ", ".join(f"{step}: {100 * top1:.1f}" for step, top1 in r["curve"])
        settings = added_settings(r)
        settings = f"`{settings}`" if settings else "none (the quick start as given)"
        lines.append(f"| {settings} | {r['data']} | {r['side']} px | {r['train_images']:,} "
                     f"({r['pick_seed']}) | {r['epochs']} ({r['steps']}) | {r['seed']} | {curve} "
                     f"| {r['outcome']} ({r['p_value']:.2g}) |")
    return "\n".join(lines)


def budget_lines(entries: list[dict]) -> str:
    lines = []
    for e in entries:
        beat = sum(c is not None for c in e["first_beat_steps"])
        when = (f"first beat the untrained network after about {e['median_first_beat']} steps (median of the runs "
                f"that did; {beat} of {e['runs']} did)" if beat else
                (f"none of {e['runs']} runs" if e["runs"] > 1 else "its one run did not") + " beat the untrained network")
        when += (f" (beat: by more than {e['beat_margin_points']:g} points, the 95 % interval on its "
                 f"{e['held_out_images']:,} held-out images, or by the paired test at the end)")
        when += f"; {e['ended_worse']} ended worse than it by the paired test" if e["ended_worse"] else ""
        kind = {True: " (taken as grayscale)", False: " (colour)"}.get(e.get("grayscale"), "")
        lines.append(f"- {e['train_images']:,} {e['data']} at {e['side']} px{kind}: {when}. Rows from: "
                     f"{'; '.join(e['provenance'])}.")
    return "\n".join(lines)


def alone(r: dict) -> bool:
    """Whether a run had the cores to itself: its 15-minute load average afterwards at most its
    cores (rows that did not record it count as alone: they were run one at a time)."""
    return "load_average_after" not in r or r["load_average_after"][2] <= r.get("cores", 2) + 0.25


def quickstart_summary(rows: list[dict]) -> str:
    """The README's table: each data set and run length, the mean over its seeds; the time from
    the runs that had the cores to themselves (alone)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(run_key(r), []).append(r)
    lines = ["| `byol pretrain --data.path FOLDER --train.epochs E` on | E (steps) | seeds | kNN top-1, untrained -> after "
             "(mean) | verdicts | time per run (mean) |", "|---|---|---|---|---|---|"]
    for (data, side, images, epochs), runs in sorted(groups.items()):
        verdicts = verdict_counts(runs)
        folder = images + (runs[0].get("held_out_images") or 0)
        lines.append(f"| {folder:,} {data}, {side} px ({images:,} trained on) | {epochs} ({runs[0]['steps']}) "
                     f"| {', '.join(str(r['seed']) for r in sorted(runs, key=lambda r: r['seed']))} "
                     f"| {pct(statistics.mean(r['knn_untrained_top1'] for r in runs))} -> "
                     f"**{pct(statistics.mean(r['knn_final_top1'] for r in runs))}** | {verdicts} "
                     f"| {time_of([r for r in runs if alone(r)])} "
                     f"({runs[0]['precision']}, {runs[0]['cpu_kind']}, {runs[0]['threads']} threads) |")
    return "\n".join(lines)


def time_of(runs: list[dict]) -> str:
    if not runs:
        return "no run alone on the cores"
    return f"{statistics.mean(r['wall_seconds'] for r in runs) / 60:.0f} min ({len(runs)} run{'s' * (len(runs) > 1)} alone)"


def axes():
    """A figure of the pages' size, drawn without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6.4, 3.6), dpi=110)


def saved(fig, ax, xlabel: str, ylabel: str, title: str, path: Path) -> None:
    """Labels, legend and grid, then the image at `path` (no software stamp: the same rows give the same file)."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def plot(rows: list[dict], path: Path) -> None:
    """Small multiples: one panel per kind of data (its name, side and training images), every
    seed's curve in it coloured by run length, each run's untrained level as a dashed line of
    the same colour; one y scale for all panels, so they compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds: dict[tuple, list[dict]] = {}
    for r in in_order(rows):
        kinds.setdefault((r["data"], r["side"], r["train_images"]), []).append(r)
    columns = 3
    count = len(kinds)
    fig, axes_grid = plt.subplots((count + columns - 1) // columns, columns, figsize=(10, 3.0 * ((count + 2) // 3)),
                                  dpi=110, sharey=True, squeeze=False)
    lengths = sorted({r["epochs"] for r in rows})
    colour = {epochs: f"C{i}" for i, epochs in enumerate(lengths)}
    for ax, ((data, side, images), runs) in zip(axes_grid.flat, kinds.items()):
        for r in runs:
            steps, top1 = zip(*r["curve"])
            ax.plot(steps, [100 * t for t in top1], color=colour[r["epochs"]], marker="o", markersize=2.5,
                    linewidth=1.2)
            ax.axhline(100 * r["curve"][0][1], color=colour[r["epochs"]], linewidth=0.8, linestyle="--", alpha=0.7)
        ax.set_title(f"{images:,} {data}, {side} px", fontsize=9)
        ax.set_xlabel("training steps", fontsize=8)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes_grid.flat[count:]:
        ax.axis("off")
    for ax in axes_grid[:, 0]:
        ax.set_ylabel("kNN top-1 (%)", fontsize=8)
    handles = [plt.Line2D([], [], color=colour[e], label=f"{e} epochs") for e in lengths]
    handles.append(plt.Line2D([], [], color="grey", linestyle="--", label="untrained"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle("The README's quick start: kNN top-1 on held-out images during pretraining, one panel per kind of "
                 "data", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def compare_settings(r: dict) -> tuple:
    """What a side-by-side comparison holds fixed: rows that differ in any of it are two tables."""
    return (r["comparison"], r["split"], r["epochs"], r["train_images"], r["backbone"], r["batch"], r["cpu_kind"],
            r["device"], r["threads"])


def compare_tables(rows: list[dict]) -> str:
    """Each comparison (compare.py rows of one setting, compare_settings): per library the final kNN
    top-1 and its gain over the same untrained network (compare.summarize), the pretraining time and
    its ratio to this project's, and the seconds to lightly's final level, each library timed by its
    own first crossing (time_to_accuracy.summarize)."""
    from compare import summarize
    from time_to_accuracy import spread
    from time_to_accuracy import summarize as to_level

    def sd(values) -> str:  # the spread over seeds: sample standard deviation, nothing for one seed
        values = [v for v in values if v is not None]
        return f" ± {spread(values)['stdev']}" if len(values) > 1 else ""

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault(compare_settings(r), []).append(r)
    for key, runs in groups.items():  # the peers run fp32 as documented: those runs serve the fp32 comparison too
        if key[0] == "fp32":
            mine = {(r["library"], r["seed"]) for r in runs}
            runs += [{**r, "comparison": "fp32"} for r in groups.get(("defaults", *key[1:]), [])
                     if (r["library"], r["seed"]) not in mine and r.get("precision", "32-true") == "32-true"
                     and r["library"] != "byol"]
    out = ["![kNN top-1 against pretraining seconds for each library](images/compare_knn.png)", ""]
    for key, runs in sorted(groups.items(), key=lambda kv: str(kv[0])):
        comparison, split, epochs, images, backbone, batch, cpu, device, threads = key
        curves = [r for r in runs if r.get("curve")]
        reached = {}
        if any(r["library"] == "lightly" for r in curves):
            reached = {g["group"]: g for g in to_level(curves, "lightly", epochs)}
        level = next(iter(reached.values()))["level_knn_top1"] if reached else None
        commands = "; ".join(f"`{c}`" for c in dict.fromkeys(r.get("command", "python benchmarks/compare.py ...")
                                                             for r in runs))
        out += [f"**{comparison}** ({'each library as its documentation runs it' if comparison == 'defaults' else 'every library in ' + comparison}); "
                f"{split} split; {images:,} CIFAR-10 training images, {backbone}, batch {batch}, {epochs} epochs; "
                f"{device}, {threads} threads, {cpu}; commit {', '.join(sorted({r['commit'] for r in runs}))}; {commands}", "",
                "| library | precision | seeds | kNN top-1 (mean ± s.d. over seeds; each) | gain over the untrained network | "
                f"pretraining time (mean ± s.d.) | against this project | time to {level if level is not None else '-'} % "
                "(lightly's final kNN), own first crossing |", "|---|---|---|---|---|---|---|---|"]
        for s in summarize(runs):
            hit = reached.get(s["summary"])
            when = ("no curve" if hit is None else
                    f"{hit['seconds_to_level_mean']:.0f}{sd(hit['seconds_to_level'])} s ({hit['reached']})"
                    if hit["seconds_to_level_mean"] is not None else f"never ({hit['reached']})")
            seconds = [r["pretrain_seconds"] for r in runs if r["library"] == s["summary"]]
            out.append(f"| {s['summary']} | {', '.join(s['precision'])} | {', '.join(map(str, s['seeds']))} "
                       f"| **{s['knn_top1_mean']:.2f}{sd(s['knn_top1_each'])} %**; "
                       f"{', '.join(f'{v:.2f}' for v in s['knn_top1_each'])} "
                       f"| {s['gain_over_untrained_mean']:+.2f} | {s['pretrain_seconds_mean']:.0f}{sd(seconds)} s "
                       f"| {s['time_ratio_to_byol']}x | {when} |")
        out.append("")
    return "\n".join(out).strip()


def compare_plot(rows: list[dict], path: Path) -> None:
    """kNN top-1 against pretraining seconds: each library's curve (compare.py --curve), a final
    point where a library has no curve, the untrained network dotted."""
    fig, ax = axes()
    colours: dict[str, str] = {}
    for r in sorted((r for r in rows if "error" not in r), key=lambda r: (r["library"], r["seed"])):
        if r["library"] == "untrained":
            ax.axhline(r["knn_top1_own_norm"], color="grey", linewidth=0.6, linestyle=":")
            continue
        name = f"{r['library']} ({r['precision']})"
        first = name not in colours
        colour = colours.setdefault(name, f"C{len(colours)}")
        points = [(p[1], p[2]) for p in r["curve"]] if r.get("curve") else [(r["pretrain_seconds"], r["knn_top1"])]
        seconds, top1 = zip(*points)
        ax.plot(seconds, top1, color=colour, marker="o", markersize=3, linewidth=1, label=name if first else None)
    saved(fig, ax, "pretraining seconds (kNN evaluations left out)", "kNN top-1 (%)",
          "Side by side on the same images and cores (dotted: untrained)", path)


BAND_PIPELINES = ("jpeg-3-bands", "tiff-13-bands")  # benchmarks/loader.py's multi-band rows and their JPEG peer


def loader_tables(rows: list[dict]) -> str:
    """The loader benchmark: for each photo size, the latest run's images/s of every pipeline
    (benchmarks/loader.py), the mean and standard deviation over its repeats, each against the
    pipeline that does the same work with its differences named, from rows of that one run (one
    command, one commit: ratios are never taken across runs)."""
    from loader import PIPELINES, ratio

    def photos(r: dict) -> str:  # made photos are named by their size; a user's own by the folder's kind
        return r["photo_size"] or "own"

    def by_area(size: str) -> list[int]:
        return [int(v) for v in size.split("x")] if "x" in size else [1 << 30]

    rows = [r for r in rows if r["pipeline"] not in BAND_PIPELINES]  # beyond-rgb.md has their table
    latest: dict[str, tuple] = {}
    for r in rows:  # a photo size's latest run: the last command and commit that wrote rows for it
        latest[photos(r)] = (r["command"], r["commit"])
    parts = []
    for size, run in sorted(latest.items(), key=lambda kv: by_area(kv[0])):
        mine = {(r["pipeline"], r["workers"]): r for r in rows if (r["command"], r["commit"]) == run
                and photos(r) == size}
        counts = sorted({w for _, w in mine})
        names = [p for p in PIPELINES if any((p, w) in mine for w in counts)]
        first = next(iter(mine.values()))
        what = f"{size.replace('x', ' x ')} JPEG photos" if size != "own" else "Your own photos (--photos)"
        parts.append(f"**{what} ({first['photo_kB']:.0f} kB on average), two {first['output']}-px views each; "
                     f"images/s as the mean ± standard deviation of {first.get('repeats', 1)} measurements**\n")
        parts.append("| pipeline | what each worker does | " + " | ".join(
            f"images/s, {w} worker{'s' * (w > 1)}" for w in counts)
            + " | per worker (1 worker) | against the same work (1 worker) | against the bare decode of the same "
            "files (1 worker) | workers for "
            f"{first['gpu_demand_estimate']:,} images/s (an estimate of one H100's demand) |")
        parts.append("|---|---|" + "---|" * len(counts) + "---|---|---|---|")
        for name in names:
            one = mine.get((name, 1))
            what_it_does, same, differences = PIPELINES[name]
            base = mine.get((same, 1)) if same else None
            against = (f"{ratio(one, base)} `{same}`" + (f"; differs: {'; '.join(differences)}" if differences else "")
                       if one and base else f"`{same}` not measured" if same else "-")
            bare = mine.get((one.get("bare_decode"), 1)) if one else None
            decode = f"{ratio(one, bare)} `{one['bare_decode']}`" if bare else "-"
            cells = " | ".join(f"{mine[(name, w)]['images_per_s']:.0f} ± {mine[(name, w)]['images_per_s_sd']:.0f}"
                               if (name, w) in mine else "-" for w in counts)
            cache = (f" (the copy took {one['cache_seconds']:.1f} s, once, not counted)"
                     if one and one.get("cache_seconds") else "")
            parts.append(f"| `{name}` | {what_it_does}{cache} | {cells} | "
                         + (f"{one['per_worker']:.0f} | {against} | {decode} | "
                            f"{one['workers_for_gpu_demand_estimate']:.1f} |" if one else f"- | {against} | - | - |"))
        device = [r for (name, w), r in sorted(mine.items()) if w == 1 and r.get("device_ms_per_batch") is not None]
        if device:
            parts.append("\nThe training device's share of the device-crop rows (both views cut, resized and flipped), "
                         "timed after the workers' measurement:\n")
            parts.append("| pipeline | device | ms per batch | images/s | bytes per image over the host-to-device "
                         "copy (padded canvas; the photo decoded) | the same, workers' crops |")
            parts.append("|---|---|---|---|---|---|")
            for r in device:
                parts.append(f"| `{r['pipeline']}` | {r['device']} | {r['device_ms_per_batch']:.0f} ± "
                             f"{r['device_ms_per_batch_sd']:.0f} ({r['device_batch']} images) | "
                             f"{r['device_images_per_s']:.0f} | {r['transfer_bytes_per_image'] / 1e3:,.0f} kB "
                             f"({r['decoded_bytes_per_image'] / 1e3:,.0f} kB) | "
                             f"{r['transfer_bytes_per_image_workers_path'] / 1e3:,.0f} kB |")
        torches = ", ".join(sorted({r["torch"] for r in mine.values()}))
        busiest = max(r["load_average_after"][0] for r in mine.values())
        parts.append(f"\n{first['cpu_kind']}, {first['cores']} cores, Pillow {first['pillow']}, torch {torches}; "
                     f"highest 1-minute load average after a measurement {busiest:.2f}; commit {run[1]}; "
                     f"`{run[0]}`\n")
    return "\n".join(parts).rstrip()


def crop_speeds(rows: list[dict]) -> list[dict]:
    """crop_speed.json, what data.crop_on auto reads on a CPU (byol.training.plan.cpu_crops): for
    each CPU kind, its latest end-to-end run (benchmarks/crop_on.py) of both paths."""
    keep = ("cpu_kind", "device_images_per_s", "device_images_per_s_sd", "workers_images_per_s",
            "workers_images_per_s_sd", "faster", "what", "precision", "commit")
    latest = {r["cpu_kind"]: r for r in rows}
    return [{k: r[k] for k in keep} for _, r in sorted(latest.items())]


def crop_on_table(rows: list[dict]) -> str:
    """Where photos' crops are cut, end to end (benchmarks/crop_on.py): training images/s of both
    paths on the same files, each run of it."""
    lines = ["| run | CPU, cores | precision | training images/s, crops on the device | in the workers | device "
             "against workers | faster | commit, command |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['what']}, {r['photos']} photos, {r['repeats']} runs of each | {r['cpu_kind']}, "
                     f"{r['cores']} | {r['precision']} | {r['device_images_per_s']:.1f} ± "
                     f"{r['device_images_per_s_sd']:.1f} | {r['workers_images_per_s']:.1f} ± "
                     f"{r['workers_images_per_s_sd']:.1f} | {r['device_against_workers']} | {r['faster']} | "
                     f"{r['commit']}, `{r['command']}` |")
    return "\n".join(lines)


def step_time_table(rows: list[dict]) -> str:
    """The in-memory training step (benchmarks/bench.py throughput, B1) of each commit measured in
    one session: each process's median step, their mean and standard deviation, and each commit's
    mean against the first commit's (the rows' order)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["commit"], []).append(r)
    first = statistics.fmean(r["ms_per_step"] for r in next(iter(by.values())))
    lines = ["| commit | network, batch | CPU, threads | precision | ms per step (mean ± sd of the processes' medians) "
             "| each process | against the first commit | command |", "|---|---|---|---|---|---|---|---|"]
    for commit, runs in by.items():
        ms = [r["ms_per_step"] for r in runs]
        sd = statistics.stdev(ms) if len(ms) > 1 else 0.0
        r = runs[0]
        lines.append(f"| {commit} | {r['backbone']}, {r['batch']} | {r['cpu_kind']}, {r['threads']} | {r['precision']} "
                     f"| {statistics.fmean(ms):.0f} ± {sd:.0f} | {', '.join(f'{m:.0f}' for m in ms)} | "
                     f"{statistics.fmean(ms) / first:.2f}x | `{r['command']}` |")
    return "\n".join(lines)


def verdict_counts(runs: list[dict]) -> str:
    """The runs' verdicts counted: '1 got worse, 2 no clear change'."""
    return ", ".join(f"{n} {o}" for o, n in sorted(Counter(r["outcome"] for r in runs).items()))


def bands_knn_table(rows: list[dict]) -> str:
    """benchmarks/bands.py: for each variant (all bands, RGB bands only) and run length, kNN top-1
    untrained -> final (mean over seeds, each seed's in brackets), the verdicts against each run's
    own untrained network, and the final kNN of all bands against RGB only on the same seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["bands"], r["epochs"], r["variant"]), []).append(r)
    lines = ["| data | variant | input bands | seeds | epochs (steps) | kNN top-1 untrained -> final (mean; each seed) "
             "| verdicts against the untrained network | final, all bands against RGB only (same seeds) | precision, CPU "
             "|", "|---|---|---|---|---|---|---|---|---|"]
    for (bands, epochs, variant), runs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "all bands")):
        seeds = [r["seed"] for r in runs]
        other = {r["seed"]: r for r in groups.get((bands, epochs, "RGB bands only"), [])}
        if variant == "all bands" and all(s in other for s in seeds):
            gaps = [100 * (r["knn_final_top1"] - other[r["seed"]]["knn_final_top1"]) for r in runs]
            against = f"{statistics.fmean(gaps):+.1f} points ({', '.join(f'{g:+.1f}' for g in gaps)})"
        else:
            against = "-"
        each = "; ".join(f"{100 * r['knn_untrained_top1']:.1f} -> {100 * r['knn_final_top1']:.1f}" for r in runs)
        mean = (f"{100 * statistics.fmean(r['knn_untrained_top1'] for r in runs):.1f} % -> "
                f"**{100 * statistics.fmean(r['knn_final_top1'] for r in runs):.1f} %**")
        lines.append(f"| {runs[0]['data']} | {variant} | {runs[0]['input_bands']} | {', '.join(map(str, seeds))} | "
                     f"{epochs} ({runs[0]['steps']}) | {mean} ({each}) | {verdict_counts(runs)} | {against} | "
                     f"{runs[0]['precision']}, {runs[0]['cpu_kind']} |")
    last = rows[-1]
    return "\n".join(lines) + (f"\n\ntorch {last['torch']}; commit {last['commit']}; "
                               f"`{last['benchmark_command']}`; each run's own command in its row")


def band_defaults_table(rows: list[dict]) -> str:
    """benchmarks/band_defaults.py: for each set and candidate (brightness, contrast, band
    dropout), kNN top-1 untrained -> final over its training seeds (the mean, and each seed's)
    and the verdicts; a seed run again counts once, its latest row."""
    latest = {(r["set"], r["brightness"], r["contrast"], r["band_drop_p"], r["seed"]): r for r in rows}
    by: dict[tuple, list[dict]] = {}
    for (*candidate, _), r in latest.items():
        by.setdefault(tuple(candidate), []).append(r)
    lines = ["| validation set | brightness, contrast (standard deviations) | band dropout | training seeds | "
             "epochs (steps) | kNN top-1 untrained -> final (mean; each seed) | verdicts against the untrained network |",
             "|---|---|---|---|---|---|---|"]
    for (name, brightness, contrast, drop), runs in by.items():
        before, after = (statistics.fmean(100 * r[k] for r in runs) for k in ("knn_untrained_top1", "knn_final_top1"))
        each = "; ".join(f"{100 * r['knn_untrained_top1']:.1f} -> {100 * r['knn_final_top1']:.1f}" for r in runs)
        verdicts = collections.Counter(r["outcome"] for r in runs)
        lines.append(f"| {name} | {brightness}, {contrast} | {drop} | {', '.join(str(r['seed']) for r in runs)} | "
                     f"{runs[0]['epochs']} ({runs[0]['steps']}) | {before:.1f} % -> **{after:.1f} %** ({each}) | "
                     f"{', '.join(f'{n} {v}' for v, n in verdicts.most_common())} |")
    r = rows[-1]
    runners = sorted({x["runner"] for x in rows if x.get("runner")})
    return "\n".join(lines) + (f"\n\n{r['cpu_kind']}, {r['precision']}, torch {r['torch']}; data seed {r['data_seed']}; "
                               f"commits {', '.join(sorted({x['commit'] for x in rows}))}; "
                               + "; ".join(sorted({f"`{x['benchmark_command']}`" for x in rows}))
                               + "".join(f" (rows of training seed 0: {x})" for x in runners))


def bands_loader_table(rows: list[dict]) -> str:
    """The loader rows of 13-band GeoTIFFs and 3-band JPEGs (benchmarks/loader.py), latest run."""
    from loader import ratio

    mine = [r for r in rows if r["pipeline"] in BAND_PIPELINES and r["workers"] == 1]
    if not mine:
        return "No rows yet: `python benchmarks/loader.py --pipelines jpeg-3-bands,tiff-13-bands ...`"
    run = (mine[-1]["command"], mine[-1]["commit"])
    mine = [r for r in mine if (r["command"], r["commit"]) == run]
    by = {r["pipeline"]: r for r in mine}
    lines = ["| files | side | kB a file | images/s, 1 worker (mean ± sd) | against 3-band JPEGs |", "|---|---|---|---|---|"]
    for name, what in (("jpeg-3-bands", "3-band JPEG (q90)"), ("tiff-13-bands", "13-band 16-bit GeoTIFF")):
        if name not in by:
            continue
        r = by[name]
        against = ratio(r, by["jpeg-3-bands"]) if name != "jpeg-3-bands" and "jpeg-3-bands" in by else "-"
        lines.append(f"| {what} | {r['photo_size'].replace('x', ' x ')} | {r.get('file_kB', r['photo_kB']):.0f} | "
                     f"{r['images_per_s']:.0f} ± {r['images_per_s_sd']:.0f} | {against} |")
    r = mine[0]
    lines.append(f"\n{r['cpu_kind']}, {r['cores']} cores, torch {r['torch']}; {r['repeats']} measurements each; "
                 f"commit {run[1]}; `{run[0]}`")
    return "\n".join(lines)


def continued_table(rows: list[dict]) -> str:
    """Continued pretraining (benchmarks/continued.py): for each split and variant, kNN top-1 on
    domain B at the run's start and end (means over its seeds), the verdicts against the start,
    and the final kNN against scratch's on the same seeds."""
    lines = ["| split | variant | seeds | start | kNN top-1 at the start -> end (mean) | verdicts against the start "
             "| end against scratch, same seeds (mean) | epochs (steps) | precision, CPU |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["split"], r["variant"]), []).append(r)
    scratch = {(r["split"], r["seed"]): r["knn_final_top1"] for r in rows if r["variant"] == "scratch"}
    for (split, variant), runs in sorted(groups.items(), key=lambda kv: (kv[0][0] != "val", kv[0][1])):
        runs = sorted(runs, key=lambda r: r["seed"])
        verdicts = verdict_counts(runs)
        paired = [r["knn_final_top1"] - scratch[(split, r["seed"])] for r in runs if (split, r["seed"]) in scratch]
        against = (f"{100 * statistics.mean(paired):+.1f} points ({len(paired)} seed{'s' * (len(paired) > 1)})"
                   if paired and variant != "scratch" else "-")
        extra = " ".join(f"--{a}" for a in runs[0]["run_command"].split(" --")[1:] if a.startswith(("optim", "model.tau")))
        lines.append(f"| {split} ({runs[0]['held_out_images']:,} held-out images) | {variant}{f' ({extra})' if extra else ''} | "
                     f"{', '.join(str(r['seed']) for r in runs)} | {runs[0]['start']} "
                     f"| {pct(statistics.mean(r['knn_untrained_top1'] for r in runs))} -> "
                     f"**{pct(statistics.mean(r['knn_final_top1'] for r in runs))}** | {verdicts} | {against} "
                     f"| {runs[0]['epochs']} ({runs[0]['steps']}) | {runs[0]['precision']}, {runs[0]['cpu_kind']} |")
    return "\n".join(lines)


def replaced(text: str, name: str, content: str, where: Path) -> str:
    start, end = markers(name)
    if start not in text or end not in text:
        sys.exit(f"results: {where} has no '{start}' ... '{end}' markers; add them where the table goes")
    return text[:text.index(start) + len(start)] + "\n" + content + "\n" + text[text.index(end):]


def outputs(rows: list[dict]) -> dict[Path, str]:
    """Each file this script writes (but the plot), as the rows make it."""
    from curves import summarize

    entries = summarize(rows)
    page, readme = ROOT / "docs" / "benchmarks.md", ROOT / "README.md"
    page_text = replaced(page.read_text(), "quickstart-runs", quickstart_runs(rows), page)
    page_text = replaced(page_text, "budget", budget_lines(entries), page)
    candidates = RESULTS / "quickstart-val.jsonl"
    page_text = replaced(page_text, "quickstart-val", quickstart_candidates(read_rows(candidates))
                         if candidates.exists() else "No rows yet: `python benchmarks/quickstart.py --pick-seed 1 "
                         "--out benchmarks/results/quickstart-val.jsonl ...`", page)
    continued = RESULTS / "continued.jsonl"
    page_text = replaced(page_text, "continued", continued_table(read_rows(continued)) if continued.exists() else
                         "No rows yet: `python benchmarks/continued.py --out benchmarks/results/continued.jsonl ...`",
                         page)
    compared = RESULTS / "compare.jsonl"
    page_text = replaced(page_text, "compare", compare_tables(read_rows(compared)) if compared.exists() else
                         "No rows yet: `python benchmarks/compare.py --out benchmarks/results/compare.jsonl ...`", page)
    loader = RESULTS / "loader.jsonl"
    page_text = replaced(page_text, "loader", loader_tables(read_rows(loader)) if loader.exists() else
                         "No rows yet: `python benchmarks/loader.py --out benchmarks/results/loader.jsonl ...`", page)
    bands_page = ROOT / "docs" / "beyond-rgb.md"
    bands = read_rows(RESULTS / "bands.jsonl") if (RESULTS / "bands.jsonl").exists() else []
    bands_text = replaced(bands_page.read_text(), "bands-knn", bands_knn_table(bands) if bands else
                          "No rows yet: `python benchmarks/bands.py --out benchmarks/results/bands.jsonl ...`", bands_page)
    defaults = read_rows(RESULTS / "band_defaults.jsonl") if (RESULTS / "band_defaults.jsonl").exists() else []
    bands_text = replaced(bands_text, "band-defaults", band_defaults_table(defaults) if defaults else
                          "No rows yet: `python benchmarks/band_defaults.py --out benchmarks/results/band_defaults.jsonl`",
                          bands_page)
    bands_text = replaced(bands_text, "bands-loader", bands_loader_table(read_rows(loader)) if loader.exists() else
                          "No rows yet: `python benchmarks/loader.py --pipelines jpeg-3-bands,tiff-13-bands ...`",
                          bands_page)
    steps = RESULTS / "step_time.jsonl"
    page_text = replaced(page_text, "step-time", step_time_table(read_rows(steps)) if steps.exists() else
                         "No rows yet: `python benchmarks/bench.py throughput ...`", page)
    crops = read_rows(RESULTS / "crop_on.jsonl") if (RESULTS / "crop_on.jsonl").exists() else []
    page_text = replaced(page_text, "crop-on", crop_on_table(crops) if crops else
                         "No rows yet: `python benchmarks/crop_on.py --out benchmarks/results/crop_on.jsonl ...`", page)
    return {BUDGET: json.dumps(entries, indent=1) + "\n", CROP_SPEED: json.dumps(crop_speeds(crops), indent=1) + "\n",
            page: page_text, readme: replaced(readme.read_text(), "results", quickstart_summary(rows), readme),
            bands_page: bands_text}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table or budget.json is stale")
    args = p.parse_args(argv)
    sys.path[:0] = [str(ROOT / "src"), str(ROOT / "benchmarks")]
    rows = read_rows(RESULTS / "quickstart.jsonl")
    files = outputs(rows)
    if args.check:
        stale = [str(f.relative_to(ROOT)) for f, text in files.items() if not f.exists() or f.read_text() != text]
        if stale:
            print(f"results: stale, rerun python benchmarks/results.py: {', '.join(stale)}")
            return 1
        return 0
    for f, text in files.items():
        f.write_text(text)
    plot(rows, PLOT)
    if (RESULTS / "compare.jsonl").exists():
        compare_plot(read_rows(RESULTS / "compare.jsonl"), COMPARE_PLOT)
    print(f"results: {len(rows)} quick-start rows -> {', '.join(str(f.relative_to(ROOT)) for f in [*files, PLOT])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How did a run go: `python -m mvit_video.summary RUN [RUN ...]` (RUN = an output_dir of train/evaluate, or a
sweep's folder: `train -m` output_dir, which stands for all its jobs).

Prints one table row per run (for the jobs of a sweep, the values of the swept keys as columns): epochs trained,
the best val top-1 and its epoch, the last test's top-1/top-5 and mean class accuracy, its views and GFLOPs.
Writes into each run directory:
  summary.png    train loss, train and val top-1, and the LR against epochs (from metrics.jsonl)
  confusion.png  the confusion matrix of the last test (predictions.jsonl); with many classes only the --top-n
                 most-confused ones
  per_class.csv  per class: videos, top-1, and the class it is most often mistaken for
The PNGs need matplotlib (`pip install -e ".[plots]"`); without it the table and the CSV are still written.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mvit_video.utils.errors import UserError, cli_errors
from mvit_video.utils.helptext import parser_kwargs
from mvit_video.utils.io import atomic_write_text
from mvit_video.utils.text import printable

# mvit_video.eval (torch), hydra and matplotlib are imported in the functions that use them: `--help` and a table
# of a run answer without loading torch.

logger = logging.getLogger("mvit_video.summary")

METRICS, PREDICTIONS = "metrics.jsonl", "predictions.jsonl"
MULTIRUN, SWEEP_INDEX = "multirun.yaml", "sweep.jsonl"  # what a `train -m` sweep folder holds besides its jobs
SUMMARY_PNG, CONFUSION_PNG, PER_CLASS_CSV = "summary.png", "confusion.png", "per_class.csv"
NO_MATPLOTLIB = 'plots need matplotlib, which is not installed: pip install -e ".[plots]"'


@dataclass
class Run:
    """What a run directory holds: metrics.jsonl records by split, and the last test's predictions."""

    path: Path
    train: list[dict[str, Any]] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None  # the last test record
    predictions: list[dict[str, Any]] = field(default_factory=list)
    class_names: list[str] | None = None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a broken line is a UserError naming file and line."""
    out = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: not a JSON line ({e.msg})") from None
    return out


def load_run(path: str | Path) -> Run:
    """Read `<path>/metrics.jsonl` (required) and `<path>/predictions.jsonl` (when there is a test)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a run directory (no such directory)")
    from mvit_video.eval.reports import latest_test

    tested = latest_test(path)  # the run's own test line or an evaluation's (eval/<checkpoint>/), the newest
    if not (path / METRICS).is_file() and tested is None:
        raise UserError(f"{path}: no {METRICS}; pass the output_dir of a training or evaluate run")
    run = Run(path)
    for rec in _read_jsonl(path / METRICS) if (path / METRICS).is_file() else []:
        split = rec.get("split")
        if split == "train":
            run.train.append(rec)
        elif split == "val":
            run.val.append(rec)
    if tested is not None:
        run.test, folder = tested
        if (folder / PREDICTIONS).is_file():
            run.predictions = _read_jsonl(folder / PREDICTIONS)
    run.class_names = _class_names(run)
    return run


def _last_per_epoch(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per epoch (a resumed run may repeat epochs: the later record wins), sorted by epoch."""
    by_epoch = {int(r["epoch"]): r for r in records if "epoch" in r}
    return [by_epoch[e] for e in sorted(by_epoch)]


def _class_names(run: Run) -> list[str] | None:
    """Names from predictions.jsonl (label_name / topk_names), else per_class_accuracy.csv; None when unknown."""
    names: dict[int, str] = {}
    for p in run.predictions:
        if "label_name" in p:
            names[int(p["label"])] = p["label_name"]
        for (c, _), n in zip(p.get("topk", []), p.get("topk_names", [])):
            names[int(c)] = n
    csv_path = run.path / "per_class_accuracy.csv"
    if csv_path.is_file():
        for row in csv.DictReader(csv_path.read_text(encoding="utf-8").splitlines()):
            names.setdefault(int(row["class_index"]), row["name"])
    if not names:
        return None
    return [names.get(i, str(i)) for i in range(max(names) + 1)]


# ---------------------------------------------------------------------------------------------- sweeps


def is_sweep(path: Path) -> bool:
    """A `train -m` sweep folder: Hydra's multirun.yaml or our sweep.jsonl, and no metrics.jsonl of its own."""
    return path.is_dir() and not (path / METRICS).is_file() and any(
        (path / f).is_file() for f in (MULTIRUN, SWEEP_INDEX))


@dataclass
class Sweep:
    """A sweep folder: the keys it sweeps, and per job folder the job number and its command-line overrides."""

    path: Path
    keys: list[str]
    jobs: dict[str, tuple[int, dict[str, str]]]

    def runs(self) -> list[Path]:
        """Its job folders that hold a metrics.jsonl, in job order (folders not in sweep.jsonl after, by name)."""
        found = [p for p in self.path.iterdir() if (p / METRICS).is_file()]
        return sorted(found, key=lambda p: (p.name not in self.jobs, self.jobs.get(p.name, (0, {}))[0], p.name))

    def values(self, run: Path) -> dict[str, str]:
        """The swept keys' values of one job: as given on its command line (sweep.jsonl), else its config.yaml."""
        given = self.jobs.get(run.name, (0, {}))[1]
        out = {k: given[k] for k in self.keys if k in given}
        missing = [k for k in self.keys if k not in out]
        if missing and (run / "config.yaml").is_file():
            from omegaconf import OmegaConf

            cfg = OmegaConf.load(run / "config.yaml")
            for k in missing:
                value = OmegaConf.select(cfg, k, default=None)
                if value is not None:
                    out[k] = str(value)
        return out


def load_sweep(path: Path) -> Sweep:
    """Read a sweep folder's multirun.yaml (the swept keys) and sweep.jsonl (job folder -> overrides)."""
    keys: list[str] = []
    if (path / MULTIRUN).is_file():
        from hydra.core.override_parser.overrides_parser import OverridesParser
        from omegaconf import OmegaConf

        try:
            task = list(OmegaConf.load(path / MULTIRUN).hydra.overrides.task)
            parsed = OverridesParser.create().parse_overrides(task)
        except Exception as e:  # noqa: BLE001 -- a hand-edited or foreign file: say which
            raise UserError(f"{path / MULTIRUN}: cannot read the sweep's overrides ({type(e).__name__})") from None
        keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
        keys = [k for k in keys if not k.startswith("hydra")]
    jobs: dict[str, tuple[int, dict[str, str]]] = {}
    if (path / SWEEP_INDEX).is_file():
        for rec in _read_jsonl(path / SWEEP_INDEX):
            overrides = dict(o.split("=", 1) for o in rec.get("overrides", []) if "=" in o)
            jobs[str(rec["dir"])] = (int(rec.get("job", 0)), {k.lstrip("+~"): v for k, v in overrides.items()})
    if not keys:  # no multirun.yaml: the keys whose values differ between jobs
        all_keys = dict.fromkeys(k for _, o in jobs.values() for k in o)
        keys = [k for k in all_keys if len({o.get(k) for _, o in jobs.values()}) > 1]
    return Sweep(path, keys, jobs)


def expand_runs(args: Sequence[str]) -> list[tuple[Path, dict[str, str]]]:
    """RUN arguments -> (run directory, swept values) in order: a sweep folder stands for its jobs (with their
    values); a job folder of a sweep gets its values too; the sweep's own files (multirun.yaml, sweep.jsonl, as
    `sweep/*` expands) and its job folders without metrics yet are skipped, the latter with a note."""
    out: list[tuple[Path, dict[str, str]]] = []
    sweeps: dict[Path, Sweep] = {}

    def sweep_of(path: Path) -> Sweep:
        if path not in sweeps:
            sweeps[path] = load_sweep(path)
        return sweeps[path]

    for arg in args:
        path = Path(arg)
        if is_sweep(path):
            sweep = sweep_of(path)
            runs = sweep.runs()
            if not runs:
                raise UserError(f"{path}: a sweep folder without finished jobs (no */{METRICS} yet)")
            out.extend((r, sweep.values(r)) for r in runs)
        elif is_sweep(path.parent):
            if path.is_dir() and (path / METRICS).is_file():
                out.append((path, sweep_of(path.parent).values(path)))
            elif path.is_dir() and not path.name.startswith("."):
                print(f"skipped {path}: no {METRICS} (job not started or failed)", file=sys.stderr)
        else:
            out.append((path, {}))
    seen: set[Path] = set()
    return [(p, v) for p, v in out if not (p.resolve() in seen or seen.add(p.resolve()))]


def _column_names(keys: Sequence[str]) -> dict[str, str]:
    """Table titles of swept keys: the last part (base_lr) when that is unambiguous, else the whole key."""
    short = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if short.count(s) == 1 else k) for k, s in zip(keys, short)}


# ---------------------------------------------------------------------------------------------- table


def summary_row(run: Run) -> dict[str, Any]:
    """The table's figures for one run (None where the run has no such record)."""
    val = _last_per_epoch(run.val)
    best = max(val, key=lambda r: (r["top1"], -r["epoch"])) if val else None  # the earliest of equal bests
    t = run.test or {}
    views = t.get("views")
    gflops = t.get("gflops_per_view")
    return {
        "run": str(run.path),
        "epochs": max((int(r["epoch"]) for r in run.train), default=None),
        "best_val_top1": best["top1"] if best else None,
        "best_val_epoch": best["epoch"] if best else None,
        "test_top1": t.get("top1"),
        "test_top5": t.get("top5"),
        "mean_class_acc": t.get("mean_class_acc"),
        "views": f"{views[0]}x{views[1]}" if views else None,
        "gflops_per_view": gflops,
        "gflops_per_video": gflops * views[0] * views[1] if gflops is not None and views else None,
        "test_videos": t.get("videos"),
    }


def format_table(rows: Sequence[dict[str, Any]], swept: Sequence[str] = ()) -> str:
    """Aligned text table of summary rows ("-" where a figure is missing); `swept`: keys of a sweep shown as
    columns after the run (row[key], text)."""
    titles = _column_names(swept)
    columns = [("run", "run", "{}"), *((titles[k], k, "{}") for k in swept), ("epochs", "epochs", "{}"),
               ("best val top1", "best_val_top1", "{:.2f}"),
               ("@epoch", "best_val_epoch", "{}"), ("test top1", "test_top1", "{:.2f}"),
               ("test top5", "test_top5", "{:.2f}"), ("mean class acc", "mean_class_acc", "{:.2f}"),
               ("views", "views", "{}"), ("GFLOPs/view", "gflops_per_view", "{:.2f}"),
               ("GFLOPs/video", "gflops_per_video", "{:.2f}")]
    cells = [[title for title, _, _ in columns]]
    for row in rows:
        cells.append(["-" if row.get(key) is None else printable(fmt.format(row[key])) for _, key, fmt in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for j, r in enumerate(cells):
        # the run name left-aligned, the figures right-aligned
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- per class


def confusion_matrix(run: Run) -> np.ndarray:
    """[C, C] counts, rows = true class, columns = predicted (top-1) class, from the last test's predictions."""
    pairs = [(int(p["label"]), int(p["topk"][0][0])) for p in run.predictions if p.get("topk")]
    n = max([max(a, b) for a, b in pairs] + [len(run.class_names or []) - 1, -1]) + 1
    matrix = np.zeros((n, n), dtype=np.int64)
    for true, pred in pairs:
        matrix[true, pred] += 1
    return matrix


def _name(names: Sequence[str] | None, i: int) -> str:
    return names[i] if names and i < len(names) else str(i)


def per_class_csv(matrix: np.ndarray, names: Sequence[str] | None) -> str:
    """CSV: class_index, name, videos, top1 (percent), most_confused_with (name), confused_videos."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["class_index", "name", "videos", "top1", "most_confused_with", "confused_videos"])
    for c in range(matrix.shape[0]):
        videos = int(matrix[c].sum())
        top1 = f"{100.0 * matrix[c, c] / videos:.4f}" if videos else ""
        wrong = matrix[c].copy()
        wrong[c] = 0
        other = int(wrong.argmax()) if wrong.any() else None
        writer.writerow([c, _name(names, c), videos, top1, "" if other is None else _name(names, other),
                         0 if other is None else int(wrong[other])])
    return out.getvalue()


def most_confused(matrix: np.ndarray, top_n: int) -> list[int]:
    """The classes (at most top_n, sorted by index) with the most off-diagonal videos, as truth or prediction."""
    if matrix.shape[0] <= top_n:
        return list(range(matrix.shape[0]))
    off = matrix - np.diag(np.diag(matrix))
    score = off.sum(0) + off.sum(1)
    order = np.lexsort((np.arange(len(score)), -score))  # most confused first, ties by class index
    return sorted(int(i) for i in order[:top_n])


# ---------------------------------------------------------------------------------------------- plots


def _pyplot():
    """matplotlib.pyplot on the file-only Agg backend; UserError with the install line when it is missing."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(NO_MATPLOTLIB) from None
    matplotlib.use("Agg")  # no display needed (clusters, CI)
    import matplotlib.pyplot as plt

    return plt


def plot_summary(run: Run, out: Path) -> None:
    """summary.png: train loss; train and val top-1; LR; all against epochs."""
    plt = _pyplot()
    train, val = _last_per_epoch(run.train), _last_per_epoch(run.val)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax_loss, ax_acc, ax_lr = axes
    if train:
        epochs = [r["epoch"] for r in train]
        ax_loss.plot(epochs, [r["loss"] for r in train], marker="o", label="train")
        ax_acc.plot(epochs, [r["top1"] for r in train], marker="o", label="train top-1 (clips)")
        ax_lr.plot(epochs, [r["lr"] for r in train], marker="o")
    if val:
        ax_acc.plot([r["epoch"] for r in val], [r["top1"] for r in val], marker="s", label="val top-1 (videos)")
        best = max(val, key=lambda r: (r["top1"], -r["epoch"]))
        ax_acc.plot([best["epoch"]], [best["top1"]], marker="*", markersize=14, linestyle="none", color="C1",
                    label=f"best val {best['top1']:.1f} (epoch {best['epoch']})")
    if run.test and run.test.get("top1") is not None:
        ax_acc.axhline(run.test["top1"], color="gray", linestyle="--", label=f"test top-1 {run.test['top1']:.1f}")
    ax_loss.set(title="train loss", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="top-1 accuracy", xlabel="epoch", ylabel="%")
    ax_lr.set(title="learning rate (end of epoch)", xlabel="epoch", ylabel="LR")
    if train and min(r["lr"] for r in train) > 0:
        ax_lr.set_yscale("log")
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    if train or val or run.test:
        ax_acc.legend(loc="lower right", fontsize="small")
    fig.suptitle(run.path.name)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def plot_confusion(matrix: np.ndarray, names: Sequence[str] | None, out: Path, top_n: int, title: str) -> None:
    """confusion.png: rows = true, columns = predicted; colour = share of the row; counts written in the cells."""
    plt = _pyplot()
    keep = most_confused(matrix, top_n)
    sub = matrix[np.ix_(keep, keep)]
    rows = sub.sum(1, keepdims=True)
    share = np.divide(sub, rows, out=np.zeros(sub.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.4 * len(keep) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    labels = [_name(names, i) for i in keep]
    ax.set_xticks(range(len(keep)), labels, rotation=90, fontsize="small")
    ax.set_yticks(range(len(keep)), labels, fontsize="small")
    ax.set(xlabel="predicted", ylabel="true")
    if len(keep) <= 30:  # counts stay readable up to ~30 classes
        for i in range(len(keep)):
            for j in range(len(keep)):
                if sub[i, j]:
                    ax.text(j, i, str(sub[i, j]), ha="center", va="center", fontsize="x-small",
                            color="white" if share[i, j] > 0.5 else "black")
    shown = "" if len(keep) == matrix.shape[0] else f" ({len(keep)} most-confused of {matrix.shape[0]} classes)"
    ax.set_title(f"{title}{shown}")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------- CLI


def summarize_run(run: Run, top_n: int, plots: bool) -> list[Path]:
    """Write per_class.csv (and the PNGs when `plots`) into the run directory; returns the files written."""
    written = []
    if run.predictions:
        matrix = confusion_matrix(run)
        atomic_write_text(per_class_csv(matrix, run.class_names), run.path / PER_CLASS_CSV)
        written.append(run.path / PER_CLASS_CSV)
    if plots:
        plot_summary(run, run.path / SUMMARY_PNG)
        written.append(run.path / SUMMARY_PNG)
        if run.predictions:
            plot_confusion(matrix, run.class_names, run.path / CONFUSION_PNG, top_n,
                           f"{run.path.name}: test confusion")
            written.append(run.path / CONFUSION_PNG)
    return written


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(**parser_kwargs("summary", __doc__.split("\n\n")[0], """
        mvit-summary outputs/tiny_synthetic                  # table, summary.png, confusion.png, per_class.csv
        mvit-summary outputs/run_a outputs/run_b --top-n 30  # one row per run
        mvit-summary outputs/sweep                           # a sweep (train -m): one table, swept keys as columns"""))
    p.add_argument("runs", nargs="+", metavar="RUN", help="output directories of training / evaluate runs, or of a "
                   "sweep (train -m): all its jobs, with the swept keys as columns")
    p.add_argument("--top-n", type=int, default=20, help="classes shown in confusion.png when there are more "
                   "(the most confused ones; default 20)")
    p.add_argument("--no-plots", action="store_true", help="only the table and per_class.csv")
    args = p.parse_args(argv)
    if args.top_n < 2:
        p.error("--top-n must be >= 2")
    return args


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """Print the table of all runs, then write each run's files; without matplotlib: one line, exit code 1."""
    args = parse_args(argv)
    entries = expand_runs(args.runs)
    runs = [load_run(path) for path, _ in entries]
    swept = list(dict.fromkeys(k for _, values in entries for k in values))
    print(format_table([{**summary_row(r), **values} for r, (_, values) in zip(runs, entries)], swept))
    plots = not args.no_plots
    missing_matplotlib = False
    if plots:
        try:
            _pyplot()
        except UserError:
            missing_matplotlib, plots = True, False
    for run in runs:
        written = summarize_run(run, args.top_n, plots)
        if written:
            print(f"wrote {', '.join(printable(p) for p in written)}")
    if missing_matplotlib:
        print(f"error: {NO_MATPLOTLIB}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

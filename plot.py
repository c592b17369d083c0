"""Pictures from metrics files: the curves of one or more runs, side by side.

    python plot.py runs/grpo runs/hicra --out compare.png --smooth 0.6
    python plot.py runs/grpo runs/hicra --phases --out phases.png   # the paper's two-phase reading
    python plot.py all.jsonl drop30.jsonl --phases --out robust.png  # strategic_grams.py metrics files, side by side

Reads <run>/metrics.jsonl (one JSON object per step, written by train_grpo.py / train_hicra.py)
and draws one panel per quantity, each run a labelled line. Panels whose metrics no run logged
are left out, so a plain GRPO run without a gram list still gives a figure.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import checks

# (panel title, [(metric, line style)]): what the paper tracks during training.
PANELS = [
    ("reward / accuracy", [("reward_mean", "-"), ("eval_accuracy", "o--")]),
    ("response length (tokens)", [("response_len_mean", "-")]),
    ("token entropy", [("entropy", "-"), ("entropy_planning", "--"), ("entropy_execution", ":")]),
    ("semantic entropy (nats)", [("semantic_entropy", "-"), ("conditional_entropy", "--")]),
    ("relative perplexity", [("rel_ppl_planning", "--"), ("rel_ppl_execution", ":")]),
    ("planning-token fraction", [("planning_token_frac", "-")]),
    ("planning vs high-entropy tokens", [("planning_high_entropy_frac", "-"), ("high_entropy_planning_frac", "--")]),
    ("|advantage| (marked tokens vs rest)", [("abs_adv_mean", "-"), ("abs_adv_marked", "--"), ("abs_adv_unmarked", ":")]),
    ("gradient cosine to GRPO", [("grad_cosine_grpo", "o-")]),
]


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of <run_dir>/metrics.jsonl, or of a metrics file itself (`strategic_grams.py metrics --out`);
    a line torn by a crash (the last, usually) is skipped."""
    path = Path(run_dir) if Path(run_dir).is_file() else Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metrics file (is {run_dir} a run folder?)")
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), (int, float)):
            rows.append(row)
    if not rows:
        raise FileNotFoundError(f"{path}: no metrics yet (the run has not finished a step)")
    return rows


def smooth(values: list[float], weight: float) -> list[float]:
    """Exponential moving average (weight 0 = raw values), as TensorBoard draws it."""
    out, last = [], None
    for v in values:
        last = v if last is None else weight * last + (1 - weight) * v
        out.append(last)
    return out


def finite_points(rows: list[dict], key: str) -> tuple[list[tuple], int]:
    """(step, value) of every row that logged `key` with a finite value, and how many it had that were not."""
    points = [(row["step"], row[key]) for row in rows if key in row]
    finite = [(x, y) for x, y in points if isinstance(y, (int, float)) and math.isfinite(y)]
    return finite, len(points) - len(finite)


def relative(points: list[tuple]) -> list[tuple]:
    """(step, value / the first nonzero value): a curve as a change from where it started."""
    first = next((y for _, y in points if y != 0), None)
    return [(x, y / first) for x, y in points] if first is not None else []


# The bottom row of the two-phase figure, as the paper's Figure 3 draws it ("Entropy Change").
ENTROPY_CHANGE = (("semantic_entropy", "-", "C2", "semantic entropy"), ("entropy", ":", "C3", "token entropy"),
                  ("conditional_entropy", "--", "C4", "other grams (conditional)"))


def plot_phases(run_dirs, out_path, labels=None, smoothing: float = 0.0):
    """The paper's two-phase reading in its Figure 3's layout, one column per run: relative perplexity of
    execution against planning tokens (phase 1: execution consolidates, its perplexity falls first and
    furthest), and below, as "Entropy Change" (each divided by its value at the first step, the first nonzero
    one), semantic entropy (diversity of the Strategic Grams used), token entropy, and the conditional entropy of
    the words that follow a gram (phase 2: strategic diversity rises while token entropy falls and the
    procedures after a gram stay as certain). Returns {run label: [metrics drawn]}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, read_metrics(d)) for label, d in zip(labels or [Path(d).name for d in run_dirs], run_dirs)]
    fig, axes = plt.subplots(2, len(runs), figsize=(4 * len(runs), 6.4), squeeze=False, sharex="col")
    drawn = {}
    for column, (label, rows) in enumerate(runs):
        top, bottom = axes[0, column], axes[1, column]
        for ax, key, style, color, name in ((top, "rel_ppl_execution", "-", "C0", "execution"),
                                            (top, "rel_ppl_planning", "--", "C1", "planning"),
                                            *((bottom, *line) for line in ENTROPY_CHANGE)):
            points, _ = finite_points(rows, key)
            points = relative(points) if ax is bottom else points
            if points:
                steps, values = zip(*points)
                ax.plot(steps, smooth(list(values), smoothing), style, color=color, label=name)
                drawn.setdefault(label, []).append(key)
        top.set_title(label)
        top.set_ylabel("relative perplexity")
        bottom.set_ylabel("entropy change (/ first step)")
        bottom.set_xlabel("step")
        for ax in (top, bottom):
            if ax.get_lines():
                ax.legend(fontsize=7, loc="upper left")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return drawn


def plot_runs(run_dirs, out_path, labels=None, smoothing: float = 0.0):
    """Write one figure with a panel per tracked quantity; returns {panel title: [line labels]}.

    NaN and infinite values (a diverged step) are left out of their curve, which runs on through the
    finite points around them; how many were left out is printed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [(label, read_metrics(d)) for label, d in zip(labels or [Path(d).name for d in run_dirs], run_dirs)]
    panels = [(title, series) for title, series in PANELS
              if any(key in row for _, rows in runs for row in rows for key, _ in series)]
    cols = min(3, len(panels))
    rows_n = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 3.6 * rows_n), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    drawn, left_out = {}, 0
    for ax, (title, series) in zip(axes.flat, panels):
        for r, (label, rows) in enumerate(runs):
            for key, style in series:
                points, dropped = finite_points(rows, key)
                left_out += dropped
                if not points:
                    continue
                steps, values = zip(*points)
                values = values if "o" in style else smooth(list(values), smoothing)
                name = label if len(series) == 1 else f"{label} {key}"
                ax.plot(steps, values, style, color=colors[r % len(colors)], label=name, markersize=3)
                drawn.setdefault(title, []).append(name)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    if left_out:
        print(f"plot: left out {left_out} non-finite values (NaN or inf)", file=sys.stderr)
    return drawn


def main(argv=None):
    parser = argparse.ArgumentParser(description="Plot training curves of one or more runs side by side.")
    parser.add_argument("runs", nargs="+", help="run folders holding metrics.jsonl")
    parser.add_argument("--out", default="runs.png", help="output PNG")
    parser.add_argument("--labels", default="", help="comma-separated labels (default: folder names)")
    parser.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1)")
    parser.add_argument("--phases", action="store_true",
                        help="the paper's two phases instead (its Figure 3), a column per run: relative perplexity "
                             "of execution vs planning tokens; semantic, token and conditional entropy as a change "
                             "from the first step")
    args = parser.parse_args(argv)
    message = checks.problem(vars(args), [("smooth", lambda x: checks.number(x) and 0 <= x < 1, "a number in [0, 1)")])
    if message:
        sys.exit(f"error: {message}")
    labels = args.labels.split(",") if args.labels else None
    if labels and len(labels) != len(args.runs):
        sys.exit(f"error: --labels has {len(labels)} names for {len(args.runs)} runs")
    try:
        drawn = (plot_phases if args.phases else plot_runs)(args.runs, args.out, labels, args.smooth)
    except FileNotFoundError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {args.out} ({', '.join(drawn)})")


if __name__ == "__main__":
    main()

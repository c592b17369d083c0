"""plot.py: the figure has the named panels with one line per run and metric."""

import json

import pytest

import plot


def write_run(folder, steps, with_grams=True, scale=1.0):
    folder.mkdir()
    rows = []
    for s in range(steps):
        row = {"step": s, "reward_mean": 0.1 * s * scale, "response_len_mean": 20 + s, "entropy": 1.0 - 0.05 * s}
        if with_grams:
            row.update(semantic_entropy=2.0 + 0.1 * s, entropy_planning=1.2, entropy_execution=0.8,
                       rel_ppl_planning=1.0 - 0.01 * s, rel_ppl_execution=1.0 - 0.02 * s, planning_token_frac=0.1,
                       conditional_entropy=0.5, planning_high_entropy_frac=0.6, high_entropy_planning_frac=0.05,
                       abs_adv_mean=0.4, abs_adv_marked=0.5, abs_adv_unmarked=0.38)
            if s % 3 == 0:
                row["grad_cosine_grpo"] = 0.99
        if s % 2 == 1:
            row["eval_accuracy"] = 0.2 * scale
        rows.append(row)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_one_run_all_panels(tmp_path):
    run = write_run(tmp_path / "hicra", 6)
    out = tmp_path / "one.png"
    drawn = plot.plot_runs([run], out)
    assert list(drawn) == [title for title, _ in plot.PANELS]
    assert drawn["reward / accuracy"] == ["hicra reward_mean", "hicra eval_accuracy"]
    assert drawn["relative perplexity"] == ["hicra rel_ppl_planning", "hicra rel_ppl_execution"]
    assert drawn["planning-token fraction"] == ["hicra"]
    assert drawn["planning vs high-entropy tokens"] == ["hicra planning_high_entropy_frac",
                                                        "hicra high_entropy_planning_frac"]
    assert drawn["gradient cosine to GRPO"] == ["hicra"]
    assert png_size(out) == (1500, 1080)   # 3 columns x 3 rows of 5 x 3.6 inches at 100 dpi


def test_several_runs_overlaid_and_missing_panels_dropped(tmp_path):
    grpo = write_run(tmp_path / "grpo", 4, with_grams=False)
    hicra = write_run(tmp_path / "hicra", 4, scale=2.0)
    out = tmp_path / "both.png"
    drawn = plot.plot_runs([grpo, hicra], out, labels=["GRPO", "HICRA"], smoothing=0.5)
    assert drawn["reward / accuracy"] == ["GRPO reward_mean", "GRPO eval_accuracy",
                                          "HICRA reward_mean", "HICRA eval_accuracy"]
    assert drawn["response length (tokens)"] == ["GRPO", "HICRA"]
    assert drawn["semantic entropy (nats)"] == ["HICRA semantic_entropy", "HICRA conditional_entropy"]   # GRPO: none
    grpo_only = plot.plot_runs([grpo], tmp_path / "grpo.png")
    assert set(grpo_only) == {"reward / accuracy", "response length (tokens)", "token entropy"}
    assert png_size(tmp_path / "grpo.png") == (1500, 360)


def test_smoothing_is_an_ema():
    assert plot.smooth([1.0, 0.0, 0.0], 0.5) == [1.0, 0.5, 0.25]
    assert plot.smooth([1.0, 2.0], 0.0) == [1.0, 2.0]


def test_missing_run_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        plot.main([str(tmp_path / "nope"), "--out", str(tmp_path / "x.png")])
    assert str(info.value.code).startswith("error: ") and "metrics.jsonl" in str(info.value.code)


def test_non_finite_values_leave_gaps_not_blank_curves(tmp_path, monkeypatch, capsys):
    import matplotlib.axes
    run = tmp_path / "diverged"
    run.mkdir()
    values = [0.1, float("nan"), 0.3, float("inf"), 0.5]
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "reward_mean": v}) + "\n"
                                               for s, v in enumerate(values)))
    lines = {}
    real_plot = matplotlib.axes.Axes.plot

    def recording_plot(self, xs, ys, *args, label=None, **kwargs):
        lines[label] = (list(xs), list(ys))
        return real_plot(self, xs, ys, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording_plot)
    for smoothing, expected in [(0.0, [0.1, 0.3, 0.5]), (0.5, [0.1, 0.2, 0.35])]:
        plot.plot_runs([run], tmp_path / "d.png", smoothing=smoothing)
        xs, ys = lines["diverged reward_mean"]
        assert xs == [0, 2, 4] and ys == pytest.approx(expected)
        assert "left out 2 non-finite values" in capsys.readouterr().err


def test_empty_and_half_written_metrics_files(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit) as info:
        plot.main([str(run), "--out", str(tmp_path / "x.png")])
    assert str(info.value.code) == f"error: {run / 'metrics.jsonl'}: no metrics yet (the run has not finished a step)"
    (run / "metrics.jsonl").write_text('{"step": 0, "reward_mean": 0.5}\n{"step": 1, "reward_me')   # torn by a kill
    assert plot.read_metrics(run) == [{"step": 0, "reward_mean": 0.5}]
    plot.main([str(run), "--out", str(tmp_path / "x.png")])
    assert png_size(tmp_path / "x.png")[0] > 0
    with pytest.raises(SystemExit, match=r"^error: --smooth 1.0: needs a number in \[0, 1\)$"):
        plot.main([str(run), "--out", str(tmp_path / "x.png"), "--smooth", "1"])


def test_entropy_change_is_each_curve_over_its_first_value(tmp_path, monkeypatch):
    """Figure 3's "Entropy Change": semantic entropy 2.0, 2.1, ... is drawn as 1.0, 1.05, ...; token entropy
    1.0, 0.95, ... as itself; a curve that starts at 0 is divided by its first nonzero value."""
    import matplotlib.axes
    run = write_run(tmp_path / "hicra", 4)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for s, row in enumerate(rows):
        row["conditional_entropy"] = [0.0, 0.5, 1.0, 0.25][s]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = {}
    real_plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, x, y, *a, label="", **k: lines.setdefault(
        label, (list(x), list(y))) and real_plot(ax, x, y, *a, label=label, **k))
    plot.plot_phases([run], tmp_path / "phases.png")
    assert lines["semantic entropy"] == ([0, 1, 2, 3], pytest.approx([1.0, 1.05, 1.1, 1.15]))
    assert lines["token entropy"] == ([0, 1, 2, 3], pytest.approx([1.0, 0.95, 0.9, 0.85]))
    assert lines["other grams (conditional)"] == ([0, 1, 2, 3], pytest.approx([0.0, 1.0, 2.0, 0.5]))
    assert lines["execution"][1] == pytest.approx([1.0, 0.98, 0.96, 0.94])   # relative perplexity drawn as logged


def test_metrics_files_of_the_offline_command_plot_like_runs(tmp_path):
    """Figures 11-12: `strategic_grams.py metrics` files (all grams, 30% dropped) side by side."""
    run = write_run(tmp_path / "hicra", 4)
    (tmp_path / "all.jsonl").write_text((run / "metrics.jsonl").read_text())
    drawn = plot.plot_phases([tmp_path / "all.jsonl", run], tmp_path / "robust.png", labels=["all", "run"])
    assert drawn["all"] == drawn["run"]


def test_two_phase_figure_has_a_column_per_run(tmp_path):
    grpo = write_run(tmp_path / "grpo", 5, with_grams=False)
    hicra = write_run(tmp_path / "hicra", 5)
    out = tmp_path / "phases.png"
    drawn = plot.plot_phases([grpo, hicra], out, labels=["GRPO", "HICRA"])
    assert drawn == {"GRPO": ["entropy"],   # no gram list: token entropy only
                     "HICRA": ["rel_ppl_execution", "rel_ppl_planning", "semantic_entropy", "entropy",
                               "conditional_entropy"]}
    assert png_size(out) == (800, 640)    # 2 columns x 2 rows of 4 x 3.2 inches at 100 dpi
    plot.main([str(hicra), "--phases", "--out", str(tmp_path / "cli.png")])
    assert png_size(tmp_path / "cli.png") == (400, 640)

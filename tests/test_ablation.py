"""ablation.py: when a run counts as finished, and the results table, on hand-written run folders."""
import json
import signal
import subprocess
import sys
import time

import pytest

import ablation
from conftest import ROOT


def write_run(folder, rows):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def step(s, reward, length=10.0, entropy=0.5, **extra):
    return {"step": s, "reward_mean": reward, "response_len_mean": length, "semantic_entropy": entropy, **extra}


def test_a_run_is_finished_once_its_final_evaluation_is_logged(tmp_path):
    run = tmp_path / "grpo-s0"
    write_run(run, [step(0, 0.1, eval_accuracy=0.3), step(1, 0.2), step(2, 0.3), step(3, 0.4)])
    assert not ablation.finished(run, 4, evaluates=True)      # killed before the evaluation after step 3
    assert ablation.finished(run, 4, evaluates=False)
    (run / "metrics.jsonl").write_text((run / "metrics.jsonl").read_text() + '{"step": 4, "eval_accuracy": 0.5}\n')
    assert ablation.finished(run, 4, evaluates=True)
    assert not ablation.finished(tmp_path / "missing", 4, evaluates=True)
    assert ablation.run_config(["--max_steps", "12", "--lr", "1", "--max_steps", "3"]).max_steps == 3
    assert ablation.run_config([]).eval_every == 25
    paper = ablation.run_config(ablation.PRESETS["paper_qwen3_4b_base"]["train"] + ["--max_steps", "7"])
    assert (paper.max_steps, paper.max_new_tokens_final, paper.fsdp) == (7, 30720, True)   # the preset's, overridden


def test_results_per_method_over_seeds(tmp_path):
    # 8 training steps: the last quarter is steps 6 and 7; the final evaluation row has no training metrics.
    for seed, (a, b) in enumerate([(0.5, 0.7), (0.7, 0.9)]):
        rows = [step(s, 0.0, eval_accuracy=0.25) if s == 0 else step(s, 0.0) for s in range(6)]
        rows += [step(6, a, length=20.0, planning_token_frac=0.1), step(7, b, length=30.0, planning_token_frac=0.0),
                 {"step": 8, "eval_accuracy": 0.5 + seed / 4}]
        write_run(tmp_path / f"hicra-s{seed}", rows)
    results = ablation.evaluate_all(ablation.PRESETS["cpu"], tmp_path, ["hicra"], [0, 1])
    got = results["hicra"]
    assert got["train reward (last 25%)"] == pytest.approx([0.6, 0.8])
    assert got["response length (last 25%)"] == pytest.approx([25.0, 25.0])
    assert got["planning tokens (last 25%)"] == pytest.approx([0.05, 0.05])
    assert got["held-out accuracy (step 0)"] == [0.25, 0.25]
    assert got["held-out accuracy (final)"] == [0.5, 0.75]
    text = ablation.table(results, [0, 1])
    # mean 0.7; 95% t-interval half-width: t(0.975, 1 df) = 12.706 x sd 0.1414 / sqrt(2) = 1.2706
    assert "| hicra | 0.700 ± 1.271 | 25.0" in text.replace("25.000 ± 0.000", "25.0")
    assert ablation.interval([1.0, 2.0, 3.0]) == pytest.approx((2.0, 4.303 * 1.0 / 3 ** 0.5))


def test_the_ablation_runs_from_another_directory(qwen_dir, tmp_path, monkeypatch, capsys):
    """Two methods, one seed, one step each on a tiny model, launched from a folder that is not the
    repository, side by side on two "GPUs" (CUDA_VISIBLE_DEVICES; the runs themselves are on the CPU)."""
    monkeypatch.chdir(tmp_path)
    tiny = ["--model", str(qwen_dir), "--max_steps", "1", "--batch_size", "2", "--group_size", "2",
            "--max_new_tokens", "4", "--eval_every", "1", "--eval_size", "2", "--save_every", "1",
            "--micro_batch_tokens", "200"]
    ablation.main(["--methods", "grpo,hicra", "--seeds", "0", "--out", "abl", "--gpus", "0,1", "--", *tiny])
    log = capsys.readouterr().out
    assert "grpo-s0 on GPU 0:" in log and "hicra-s0 on GPU 1:" in log
    for method in ("grpo", "hicra"):
        rows = [json.loads(l) for l in (tmp_path / "abl" / f"{method}-s0" / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [0, 1]        # one step, then the final evaluation
    assert "| grpo |" in (tmp_path / "abl" / "results.md").read_text()
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 0


def test_a_failing_run_stops_the_ablation(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"error: the run in abl/(grpo|hicra)-s0 failed \(exit 1\); the others were"):
        ablation.main(["--methods", "grpo,hicra", "--seeds", "0", "--out", "abl", "--gpus", "0,1", "--",
                       "--model", str(qwen_dir), "--lr", "nan"])


def test_runs_launched_by_torchrun(qwen_dir, tmp_path, monkeypatch):
    """--ranks_per_run 2: each run is a torchrun of two processes (gloo on this CPU)."""
    monkeypatch.chdir(tmp_path)
    tiny = ["--model", str(qwen_dir), "--max_steps", "1", "--batch_size", "2", "--group_size", "2",
            "--max_new_tokens", "4", "--eval_every", "1", "--eval_size", "2", "--save_every", "1",
            "--micro_batch_tokens", "200"]
    ablation.main(["--methods", "grpo", "--seeds", "0", "--out", "abl", "--ranks_per_run", "2", "--", *tiny])
    rows = [json.loads(l) for l in (tmp_path / "abl" / "grpo-s0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
    assert (tmp_path / "abl" / "grpo-s0" / "ckpt" / "model.safetensors").exists()


def test_the_papers_placebo_list_is_drawn_from_the_base_models_responses(qwen_dir, tmp_path, monkeypatch):
    """make_placebo_list samples the base model on training problems and hands those responses, with the
    real list, to strategic_grams.placebo_grams; its list is written once and read back whole."""
    import strategic_grams
    seen = {}

    def fake_placebo(texts, grams, seed):
        seen.update(texts=texts, grams=grams, seed=seed)
        return ["first random", "gram"]

    monkeypatch.setattr(strategic_grams, "placebo_grams", fake_placebo)
    path = tmp_path / "placebo_grams-s3.txt"
    args = ["--model", str(qwen_dir), "--dataset", "synthetic:1", "--max_new_tokens", "6", "--eval_size", "4"]
    ablation.make_placebo_list(args, 3, path, prompts=5, samples=2)
    assert len(seen["texts"]) == 10 and seen["seed"] == 3 and seen["grams"] == strategic_grams.load_grams("paper")
    assert strategic_grams.load_grams(path) == ["first random", "gram"]
    monkeypatch.setattr(strategic_grams, "placebo_grams", lambda texts, grams, seed: [])
    ablation.make_placebo_list(args, 3, path)                   # written once: not drawn again
    with pytest.raises(SystemExit, match="would be empty"):
        ablation.make_placebo_list(args, 4, tmp_path / "placebo_grams-s4.txt", prompts=5, samples=2)


def test_a_torn_last_line_is_left_out_and_a_repeated_step_is_refused(tmp_path):
    run = tmp_path / "grpo-s0"
    write_run(run, [step(0, 0.1), step(1, 0.2)])
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 2, "reward_me')           # a crash mid-write: the run's --resume drops it too
    assert [r["step"] for r in ablation.read_metrics(run)] == [0, 1] and not ablation.finished(run, 2, evaluates=True)
    write_run(tmp_path / "twice", [step(0, 0.1), step(1, 0.2), step(1, 0.3), step(2, 0.4)])
    with pytest.raises(SystemExit, match=r"metrics.jsonl:3: step 1 is logged twice \(two runs wrote this folder"):
        ablation.finished(tmp_path / "twice", 4, evaluates=False)


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\tZ" not in next(line for line in f if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return False


def start_ablation(qwen_dir, out):
    command = [sys.executable, str(ROOT / "ablation.py"), "--methods", "grpo", "--seeds", "0", "--out", str(out), "--",
               "--model", str(qwen_dir), "--max_steps", "500", "--batch_size", "2", "--group_size", "2",
               "--max_new_tokens", "4", "--eval_every", "0", "--save_every", "0", "--micro_batch_tokens", "200"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = out / "grpo-s0" / ".lock"
    for _ in range(600):   # the run has locked its folder and logged a step
        if lock.exists() and lock.read_text() and (out / "grpo-s0" / "metrics.jsonl").exists():
            return process, json.loads(lock.read_text())["pid"]
        time.sleep(0.1)
    process.kill()
    pytest.fail("the run did not start")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_killed_ablation_takes_its_run_with_it(qwen_dir, tmp_path):
    process, child = start_ablation(qwen_dir, tmp_path / "abl")
    process.kill()                                 # kill -9: no handler runs in the ablation
    process.wait()
    for _ in range(100):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child)


def test_ctrl_c_stops_the_runs_after_their_step_and_keeps_them_resumable(qwen_dir, tmp_path):
    out = tmp_path / "abl"
    process, child = start_ablation(qwen_dir, out)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1] == "interrupted: each run saved a checkpoint after its step; run the same " \
                                           "command to resume"
    assert not alive(child) and (out / "grpo-s0" / "ckpt" / "trainer_state.pt").exists()


def test_the_loss_choices_are_methods_by_request_and_the_presets_keep_the_papers_six(monkeypatch, tmp_path, capsys):
    assert ablation.PAPER_SIX == ["grpo", "hicra", "placebo_grams", "placebo", "entropy_reg", "high_entropy"]
    expected = {"gspo": {"ratio_level": "sequence", "eps_low": 3e-4, "eps_high": 4e-4}, "cispo": {"loss": "cispo"},
                "reinforce": {"loss": "reinforce"}, "top_entropy": {"top_entropy_quantile": 0.2}}
    for method, fields in expected.items():
        script, *flags = ablation.METHODS[method]
        cfg = ablation.run_config(ablation.PRESETS["cpu"]["train"] + flags)
        assert script == "train_grpo.py" and all(getattr(cfg, k) == v for k, v in fields.items())
    launched = []
    monkeypatch.setattr(ablation, "run_ablation", lambda args, preset, out, methods, *rest: launched.append(methods))
    ablation.main(["--preset", "cpu", "--out", str(tmp_path / "a")])
    ablation.main(["--preset", "cpu", "--out", str(tmp_path / "b"), "--methods", "grpo,gspo,top_entropy"])
    assert launched == [ablation.PAPER_SIX, ["grpo", "gspo", "top_entropy"]]
    assert "gspo take GRPO's gradient on-policy" in capsys.readouterr().err    # the cpu preset is on-policy
    ablation.main(["--preset", "cpu", "--out", str(tmp_path / "c"), "--methods", "gspo", "--", "--mini_batches", "4"])
    assert "on-policy" not in capsys.readouterr().err

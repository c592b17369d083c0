"""eval.py: the pass@k estimator, majority voting, summary keys, resume, and CLI errors.

End-to-end runs use one tiny random Qwen2 model saved to a folder, and hand-made benchmark files
under tmp_path passed with --data_dir."""

import itertools
import json
import math

import pytest

import eval as ev
import rollout
from conftest import build_model


def brute_pass_at_k(outcomes, k):
    """Fraction of all k-subsets of the samples that hold a correct one."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            outcomes = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                assert ev.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(outcomes, k), abs=1e-12)
    assert ev.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # Stable where the binomials themselves would overflow a float.
    assert math.isfinite(ev.pass_at_k(2000, 7, 1000)) and 0.99 < ev.pass_at_k(2000, 7, 1000) <= 1.0
    with pytest.raises(ValueError):
        ev.pass_at_k(4, 1, 5)


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_majority_vote_and_summary_on_hand_made_file(tmp_path):
    def s(pid, j, answer, correct):
        return {"id": pid, "sample": j, "answer": answer, "correct": correct, "output": f"\\boxed{{{answer}}}"}
    rows = [
        # p1: 1/2, 0.5 and \frac{1}{2} are one answer (3 votes) against 3, 3 (2 votes): right.
        s("p1", 0, "3", False), s("p1", 1, "1/2", True), s("p1", 2, "3", False),
        s("p1", 3, "0.5", True), s("p1", 4, "\\frac{1}{2}", True),
        # p2: a 2-2 tie between 7 and 8: the first seen (8, wrong) wins; samples without an answer don't vote.
        s("p2", 0, None, False), s("p2", 1, "8", False), s("p2", 2, "7", True), s("p2", 3, "7", True),
        s("p2", 4, "8", False),
        # p3: no answers at all: the vote is wrong.
        *[s("p3", j, None, False) for j in range(5)],
    ]
    path = tmp_path / "math500.jsonl"
    write_jsonl(path, rows)
    samples = ev.read_samples(path)
    assert ev.majority([r for r in samples if r["id"] == "p1"]) == ("1/2", True)
    assert ev.majority([r for r in samples if r["id"] == "p2"]) == ("8", False)
    assert ev.majority([r for r in samples if r["id"] == "p3"]) == (None, False)

    m = ev.summarize(samples, 5)
    assert list(m) == ["avg@5", "pass@1", "pass@2", "pass@4", "pass@5", "maj@5", "n", "samples"]
    assert m["n"] == 3 and m["samples"] == 5
    assert m["maj@5"] == pytest.approx(1 / 3)
    assert m["avg@5"] == pytest.approx(5 / 15) == pytest.approx(m["pass@1"])
    assert m["pass@5"] == pytest.approx(2 / 3)
    # pass@2 per problem is 1 - C(5-c, 2) / C(5, 2): p1 (c=3) 1 - 1/10, p2 (c=2) 1 - 3/10, p3 0.
    assert m["pass@2"] == pytest.approx((0.9 + 0.7 + 0.0) / 3)
    # Fewer samples than the file holds: only samples 0..k-1 count (p1 then votes 3 over 1/2).
    assert ev.summarize(samples, 3)["maj@3"] == 0.0
    with pytest.raises(ValueError, match="missing"):
        ev.summarize(samples, 6)


def test_read_samples_drops_a_line_cut_short(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"id": "a", "sample": 0, "answer": "1", "correct": True}) + '\n{"id": "a", "sam')
    assert [r["id"] for r in ev.read_samples(path)] == ["a"]
    assert path.read_text().endswith("}\n")  # rewritten, so the next append starts a fresh line


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    build_model("qwen2", len(tiny_tokenizer)).save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def data_dir(tmp_path):
    problems = [{"id": f"m{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(3)]
    write_jsonl(tmp_path / "data" / "math500" / "test.jsonl", problems)
    return tmp_path / "data"


def run_eval(model_dir, data_dir, out_dir, *flags):
    return ev.main(["--model", str(model_dir), "--benchmarks", "math500", "--data_dir", str(data_dir),
                    "--out_dir", str(out_dir), "--max_new_tokens", "6", "--device", "cpu",
                    "--prompt_style", "chat", "--temperature", "1.0", *flags])


def test_eval_writes_samples_summary_and_resumes(model_dir, data_dir, tmp_path, monkeypatch, capsys):
    calls = []
    real_sample = rollout.sample

    def counting_sample(model, prompt_ids, *args, **kwargs):
        calls.append(len(prompt_ids))
        return real_sample(model, prompt_ids, *args, **kwargs)

    monkeypatch.setattr(rollout, "sample", counting_sample)
    out = tmp_path / "out"
    run_eval(model_dir, data_dir, out, "--limit", "2", "--samples", "2", "--batch_size", "3")
    assert calls == [3, 1]  # 2 problems x 2 samples in batches of 3
    lines = [json.loads(x) for x in (out / "math500.jsonl").read_text().splitlines()]
    assert sorted((r["id"], r["sample"]) for r in lines) == [("m0", 0), ("m0", 1), ("m1", 0), ("m1", 1)]
    assert {"id", "sample", "output", "answer", "correct", "gold"} <= set(lines[0])
    summary = json.loads((out / "summary.json").read_text())
    assert {"avg@2", "pass@1", "pass@2", "maj@2", "n", "samples"} <= set(summary["math500"])
    assert summary["math500"]["n"] == 2
    assert "| math500 | 2 |" in capsys.readouterr().out

    # A third sample: only the two missing sequences are generated; the first four lines stay as they were.
    calls.clear()
    run_eval(model_dir, data_dir, out, "--limit", "2", "--samples", "3", "--batch_size", "3")
    assert calls == [2]
    again = [json.loads(x) for x in (out / "math500.jsonl").read_text().splitlines()]
    assert again[:4] == lines and len(again) == 6
    assert json.loads((out / "summary.json").read_text())["math500"]["samples"] == 3

    # Nothing missing: nothing sampled. Other settings in the same folder: refused in one line.
    calls.clear()
    run_eval(model_dir, data_dir, out, "--limit", "2", "--samples", "3")
    assert calls == []
    with pytest.raises(SystemExit, match="^error: .*temperature"):
        run_eval(model_dir, data_dir, out, "--samples", "3", "--temperature", "0.5")


def test_cli_errors_are_one_line(model_dir, data_dir, tmp_path):
    with pytest.raises(SystemExit) as e:
        ev.main(["--benchmarks", "math500,gsm9k", "--data_dir", str(data_dir), "--out_dir", str(tmp_path / "o")])
    assert str(e.value).startswith("error: unknown benchmark gsm9k; valid: aime24,")
    assert "\n" not in str(e.value)
    with pytest.raises(SystemExit, match="^error: unknown dataset 'aime24'"):  # DataError, no traceback
        ev.main(["--model", str(model_dir), "--benchmarks", "aime24", "--data_dir", str(data_dir),
                 "--out_dir", str(tmp_path / "o")])
    with pytest.raises(SystemExit, match="^error: --model"):  # ModelLoadError
        ev.main(["--model", str(tmp_path / "nope.bin"), "--benchmarks", "math500", "--data_dir", str(data_dir),
                 "--out_dir", str(tmp_path / "o")])


def test_paper_protocol_and_run_folder(tmp_path, model_dir):
    args = ev.parse_args(["--protocol", "paper"])
    assert args.temperature == 0.6 and args.top_p == 0.95 and args.strict is True
    plain = ev.parse_args([])
    assert plain.strict is False and plain.top_p == 1.0 and plain.temperature == 0.6
    assert ev.parse_args(["--protocol", "paper", "--top_p", "1"]).top_p == 1.0   # a flag given wins
    run = tmp_path / "run"
    (run / "ckpt").mkdir(parents=True)
    for f in model_dir.iterdir():
        (run / "ckpt" / f.name).write_bytes(f.read_bytes())
    (run / "ckpt" / "trainer_state.pt").write_bytes(b"")   # written last: the checkpoint is complete
    (run / "config.json").write_text(json.dumps({"model": "Qwen/Qwen2.5-0.5B", "prompt_style": "plain"}))
    source, style = ev.resolve_model(str(run))
    assert source == str((run / "ckpt").resolve()) and style == "plain"   # the run's own
    for model, style in (("Qwen/Qwen2.5-0.5B", "plain"), ("Qwen/Qwen2.5-0.5B-Instruct", "chat")):
        # made before runs recorded their style ("" in config.json): the style the model's name gave then
        (run / "config.json").write_text(json.dumps({"model": model, "prompt_style": ""}))
        assert ev.resolve_model(str(run))[1] == style


def test_a_run_trained_further_is_never_reported_with_the_old_samples(model_dir, data_dir, tmp_path, monkeypatch):
    """The stale-eval case: evaluate a run folder, train the run on, evaluate into the same out_dir."""
    import train_grpo
    # A random model never solves a problem; a reward of the text's length gives the update a signal.
    monkeypatch.setattr(train_grpo, "math_reward", lambda text, gold, strict=False: float(len(text) % 2))
    run, out = tmp_path / "run", tmp_path / "eval"
    args = ["--model", str(model_dir), "--dataset", "synthetic:1", "--num_problems", "20", "--batch_size", "2",
            "--group_size", "2", "--max_new_tokens", "4", "--lr", "1e-2", "--warmup_steps", "0", "--eval_every", "0",
            "--save_every", "1", "--out_dir", str(run), "--plot", "false", "--log_rollouts", "0"]
    train_grpo.train(train_grpo.parse_config(args + ["--max_steps", "1"]))
    run_eval(run, data_dir, out, "--limit", "2")
    run_eval(run, data_dir, out, "--limit", "2")          # the same checkpoint: its samples are reused
    before = (run / "ckpt" / "model.safetensors").read_bytes()
    train_grpo.train(train_grpo.parse_config(args + ["--max_steps", "2", "--resume"]))
    assert (run / "ckpt" / "model.safetensors").read_bytes() != before   # the same path, new weights
    with pytest.raises(SystemExit, match="^error: .*weights"):
        run_eval(run, data_dir, out, "--limit", "2")


@pytest.mark.parametrize("flags, message", [
    (["--samples", "0"], "--samples 0: needs an integer >= 1"),
    (["--temperature", "nan"], "--temperature nan: needs a number >= 0"),
    (["--top_p", "1.5"], "--top_p 1.5: needs a number in (0, 1]"),
    (["--max_new_tokens", "0"], "--max_new_tokens 0: needs an integer >= 1"),
    (["--batch_size", "0"], "--batch_size 0: needs an integer >= 1"),
    (["--limit", "-2"], "--limit -2: needs an integer >= 1"),
    (["--device", "bogus"], "--device 'bogus': not a device"),
])
def test_bad_flags_are_one_line(tmp_path, flags, message):
    with pytest.raises(SystemExit) as info:
        ev.main(["--model", str(tmp_path / "nope"), "--out_dir", str(tmp_path / "o"), *flags])
    assert str(info.value.code).startswith(f"error: {message}") and "\n" not in str(info.value.code)


def test_prompts_longer_than_the_context_are_one_line(model_dir, tmp_path):
    long = [{"id": "long", "problem": "What is " + " + ".join(["1"] * 400) + "?", "answer": "400"}]
    write_jsonl(tmp_path / "data" / "math500" / "test.jsonl", long)   # about 800 tokens: the context is 512
    with pytest.raises(SystemExit) as info:
        run_eval(model_dir, tmp_path / "data", tmp_path / "out")
    assert str(info.value.code) == ("error: math500: 1 problem prompts fill the model's whole context of 512 tokens; "
                                    "evaluate a model with a longer context")

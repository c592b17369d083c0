"""The one prepared GPU check: what a session with a GPU runs, in one command, printing one table.

    make gpu-wheels     # where pip works: the pinned transformers wheel into .whl/ (the GPU image has 5.17)
    make gpu-check      # on the GPU machine, from a copy of the working tree: installs .whl/, runs this

Everything runs from the working tree: random weights in the shapes of configs/ (Qwen2.5-0.5B, 1.5B,
3B), a byte-level tokenizer built in-process, synthetic problems. Nothing is downloaded. Sections, in
order of importance, each in a subprocess under a time limit, all within --budget_s (8 minutes on one
H100 by design; a section that no longer fits is reported as not run, and `--only` runs it later):

  tests      `pytest -m cuda`: sampler == generate greedy (eager and graphs), graph decode == eager
             in float32 and close in bf16, the bf16 sampler's log-probs against the bf16-autocast
             teacher-forced forward the update runs, two training steps on a tiny model.
  agree      that log-prob agreement as figures, on a tiny Qwen2 and at Qwen2.5-0.5B's shape.
  step:0.5b  train_grpo.py at the default GPU settings (32 prompts x 8, 1,024 new tokens, graphs on) on
             random Qwen2.5-0.5B: two steps, the second reported (the first pays warm-up, graph capture
             and the optimizer state's first allocation): seconds and peak GiB per phase.
  sampler    bench/rollout.py at Qwen2.5-0.5B's shape, bf16, 64 and 256 sequences x --max_new_tokens:
             rollout.sample eager and with graphs against model.generate (tokens/s, ratio, fraction of
             the memory-bandwidth floor: weights plus the cache read per decoded token).
  step:1.5b, step:3b   the same two steps at those shapes with README's memory flags (fits 80 GB?).

Each row is appended to --out/gpu_check.md as soon as it exists (default $OUT when set, else
runs/gpu_check), with every section's log beside it, so a check cut short still reports what ran.
Targets (issue 15): sampler >= 3x generate at 256 x 1,024 and >= 30% of the floor with graphs; a
0.5B step under 60 s with peak memory under 60 GB; every shape under 80 GB.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Model shapes of the step sections and the memory flags README gives for each on one 80 GB card.
STEP_MODELS = {"0.5b": [], "1.5b": ["--micro_batch_tokens", "8192"], "3b": ["--grad_checkpointing", "true"]}
PHASES = ("sample", "reward", "old_logp", "update", "step")
PEAK_BANDWIDTH = {"H100": 3350.0, "H200": 4800.0}   # GB/s of the SXM parts


def run(cmd: list, timeout: float, log: Path) -> tuple[str, str]:
    """Run a command in the repository; (status, output), the output also written to `log`."""
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=max(timeout, 1))
        output, status = done.stdout + done.stderr, f"exit {done.returncode}"
    except subprocess.TimeoutExpired as e:
        output = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        status = f"timed out after {timeout:.0f} s"
    log.write_text(" ".join(map(str, cmd)) + "\n" + output)
    return status, output


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def run_tests(out: Path, timeout: float) -> list:
    status, output = run([sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfs", "-p", "no:cacheprovider",
                          "tests"], timeout, out / "tests.log")
    summary = next((line for line in reversed(output.splitlines()) if re.search(r"\d+ (passed|failed|error)", line)),
                   f"{status}: {last_line(output)}")
    return [("tests", "pytest -m cuda", summary)] + \
           [("tests", "failed", name) for name in re.findall(r"^FAILED (\S+)", output, flags=re.M)]


AGREE = """
import sys, json, torch
sys.path[:0] = ["tests", "."]
import rollout
from conftest import build_model, build_tokenizer
from test_rollout import bf16_agreement
tokenizer = build_tokenizer()
model = build_model("qwen2", len(tokenizer)).cuda()
rows = [("tiny Qwen2", bf16_agreement(model, rollout.prepare_tokenizer(tokenizer, model)))]
model, tokenizer = rollout.load_model("random:configs/qwen2.5-0.5b", device="cuda", dtype=torch.float32)
rows.append(("Qwen2.5-0.5B shape, random weights", bf16_agreement(model, tokenizer)))
print("RESULT " + json.dumps(rows))
"""


def run_agreement(out: Path, timeout: float) -> list:
    status, output = run([sys.executable, "-c", AGREE], timeout, out / "agree.log")
    found = re.search(r"^RESULT (.*)$", output, flags=re.M)
    if not found:
        return [("agree", "error", f"{status}: {last_line(output)}")]
    return [("agree", f"bf16 sampler vs bf16-autocast update forward, {name}",
             f"mean |dlogp| {s['mean_abs']:.4f}, max {s['max_abs']:.3f} nats over {s['tokens']} tokens")
            for name, s in json.loads(found.group(1))]


def run_sampler(out: Path, timeout: float, max_new: int, rounds: int, peak_gbps: float) -> list:
    results = out / "sampler.json"
    status, output = run([sys.executable, "bench/rollout.py", "--skip_cpu", "--max_new_tokens", str(max_new),
                          "--rounds", str(rounds), "--peak_gbps", str(peak_gbps), "--json", str(results)],
                         timeout, out / "sampler.log")
    if not results.exists():
        return [("sampler", "error", f"{status}: {last_line(output)}")]
    return [("sampler", f"0.5B bf16, {r['sequences']} seq x {max_new}, {r['sampler']}",
             f"{r['tokens_per_s']:,.0f} tok/s, {r['ratio_to_generate']:.2f}x generate, "
             f"{r['floor_fraction']:.1%} of the floor") for r in json.loads(results.read_text())]


def run_step(model: str, name: str, flags: list, steps: int, out: Path, timeout: float) -> list:
    """`steps` GRPO steps of train_grpo.py on `model` in a subprocess, no checkpoint written; the last
    step's seconds and peak memory per phase."""
    folder = Path(tempfile.mkdtemp(prefix=f"step-{name}-"))
    cmd = [sys.executable, "train_grpo.py", "--model", model, "--dataset", "synthetic:3",
           "--max_steps", str(steps), "--eval_every", "0", "--save_every", "-1", "--plot", "false",
           "--log_rollouts", "0", "--cuda_graphs", "true", "--out_dir", str(folder / "run"), *flags]
    label = f"{name} {' '.join(flags)}".strip()
    status, output = run(cmd, timeout, out / f"step_{name}.log")
    metrics = folder / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    subprocess.run(["rm", "-rf", str(folder)])
    if not rows:
        return [("step", label, f"no step finished ({status}): {last_line(output)}")]
    last = rows[-1]
    seconds = ", ".join(f"{p} {last[p + '_seconds']:.1f}" for p in PHASES)
    peaks = {p: last[p + "_peak_gib"] for p in ("sample", "old_logp", "update") if p + "_peak_gib" in last}
    peak_text = ", ".join(f"{p} {v:.1f}" for p, v in peaks.items()) + (f"; max {max(peaks.values()):.1f}" if peaks else "")
    note = "" if len(rows) == steps else f" ({status} after {len(rows)} of {steps} steps)"
    return [("step", f"{label}: step {last['step']} seconds{note}", seconds),
            ("step", f"{label}: step {last['step']} peak GiB", peak_text or "not logged"),
            ("step", f"{label}: responses", f"mean {last['response_len_mean']:.0f} tokens, "
                                           f"{last['sample_tokens_per_s']:,.0f} tok/s sampled")]


def environment(transformers_pin: str) -> list:
    """The GPU and the software, with a loud row when transformers is not the pinned version."""
    import torch
    import transformers
    gpu = torch.cuda.get_device_name()
    rows = [("env", "GPU", f"{gpu}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB"),
            ("env", "software", f"torch {torch.__version__}, transformers {transformers.__version__}, "
                                f"Python {platform.python_version()}")]
    if transformers_pin and transformers.__version__ != transformers_pin:
        rows.append(("env", "WARNING", f"transformers {transformers.__version__}, not the pinned {transformers_pin}: "
                                       f"run make gpu-wheels here and carry .whl"))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check"))
    parser.add_argument("--budget_s", type=float, default=480, help="no section starts after this; each is cut at it")
    parser.add_argument("--only", default="tests,agree,step:0.5b,sampler,step:1.5b,step:3b",
                        help="comma-separated sections")
    parser.add_argument("--max_new_tokens", type=int, default=1024, help="sampler section")
    parser.add_argument("--rounds", type=int, default=1, help="sampler section: rounds of each sampler")
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU here; make gpu-check runs on a GPU machine")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / "gpu_check.md"
    table.write_text("| section | what | value |\n| --- | --- | --- |\n")
    pin = next((line.split("==")[1].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.startswith("transformers==")), "")
    start = time.time()
    left = lambda: args.budget_s - (time.time() - start)   # noqa: E731

    def emit(rows):
        with table.open("a") as f:
            for section, what, value in rows:
                f.write(f"| {section} | {what} | {value} |\n")
                print(f"| {section} | {what} | {value} |", flush=True)

    emit(environment(pin))
    gpu = torch.cuda.get_device_name()
    peak_gbps = next((v for k, v in PEAK_BANDWIDTH.items() if k in gpu), 3350.0)
    emit([("env", "bandwidth floor", f"{peak_gbps:.0f} GB/s assumed for {gpu}")])
    sections = {
        "tests": (60, lambda t: run_tests(out, t)),
        "agree": (30, lambda t: run_agreement(out, t)),
        "step:0.5b": (60, lambda t: run_step("random:configs/qwen2.5-0.5b", "0.5b", STEP_MODELS["0.5b"], 2, out, t)),
        "sampler": (90, lambda t: run_sampler(out, t, args.max_new_tokens, args.rounds, peak_gbps)),
        "step:1.5b": (90, lambda t: run_step("random:configs/qwen2.5-1.5b", "1.5b", STEP_MODELS["1.5b"], 2, out, t)),
        "step:3b": (120, lambda t: run_step("random:configs/qwen2.5-3b", "3b", STEP_MODELS["3b"], 2, out, t)),
    }
    for name in args.only.split(","):
        if name not in sections:
            emit([(name, "error", f"unknown section; choose from {', '.join(sections)}")])
            continue
        need, section = sections[name]
        if left() < need:
            emit([(name, "not run", f"{left():.0f} s of the budget left, needs about {need} s (--only {name})")])
            continue
        t0 = time.time()
        emit(section(left()) + [(name, "seconds", f"{time.time() - t0:.0f}")])
    print(f"\n{time.time() - start:.0f} s in all; table {table}, logs beside it", file=sys.stderr)


if __name__ == "__main__":
    main()

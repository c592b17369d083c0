"""The one prepared GPU check: what a session with a GPU runs, in one command, printing one table.

    make gpu-wheels     # where pip works: the pinned transformers wheel into .whl/ (the GPU image has 5.17)
    make gpu-check      # on the GPU machine, from a copy of the working tree: installs .whl/, runs this

Everything runs from the working tree: random weights in the shapes of configs/ (Qwen2.5-0.5B, 1.5B,
3B), a byte-level tokenizer built in-process, synthetic problems. Nothing is downloaded. Sections, in
order, each under a time limit, all within --budget_s (8 minutes on one H100 by design):

  1. tests    `pytest -m cuda`: sampler == generate greedy (eager and graphs), graph decode == eager
              in float32, the bf16 sampler's log-probs against the bf16-autocast teacher-forced forward
              the update runs, two training steps on a tiny model (bf16 sampler copy, graphs, peaks).
  2. agree    that log-prob agreement, as figures (tiny random Qwen2 on CUDA).
  3. sampler  bench/rollout.py at Qwen2.5-0.5B's shape, bf16, 64 and 256 sequences x --max_new_tokens:
              rollout.sample eager and with graphs against model.generate (tokens/s, ratio, fraction
              of the memory-bandwidth floor: weights plus the cache read per decoded token).
  4. step     train_grpo.py at the default GPU settings (32 prompts x 8, 1,024 new tokens, graphs on)
              on random Qwen2.5-0.5B (two steps; the second is reported, the first pays warm-up and
              graph capture), then one step each at 1.5B's and 3B's shapes with README's memory flags:
              seconds and peak GiB per phase.

The table goes to stdout and, with the logs, to --out (default $OUT when set, else runs/gpu_check).
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

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Model shapes of the step section and the memory flags README gives for each on one 80 GB card.
STEP_MODELS = [("qwen2.5-0.5b", [], 2), ("qwen2.5-1.5b", ["--micro_batch_tokens", "8192"], 1),
               ("qwen2.5-3b", ["--grad_checkpointing", "true"], 1)]
PHASES = ("sample", "reward", "old_logp", "update", "step")
PEAK_BANDWIDTH = {"H100": 3350.0, "H200": 4800.0}   # GB/s, SXM parts


def run_tests(out: Path, timeout: float) -> list:
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-rfs", "-p", "no:cacheprovider", "tests"]
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        log, summary = done.stdout + done.stderr, done.stdout.strip().splitlines()[-1:]
    except subprocess.TimeoutExpired as e:
        log, summary = (e.stdout or b"").decode() + (e.stderr or b"").decode(), [f"timed out after {timeout:.0f} s"]
    (out / "pytest_cuda.log").write_text(log)
    failed = re.findall(r"^FAILED (\S+)", log, flags=re.M)
    return [("tests", "pytest -m cuda", summary[0] if summary else "no output")] + \
           [("tests", "failed", name) for name in failed]


def run_agreement() -> list:
    sys.path.insert(0, str(ROOT / "tests"))
    import rollout
    from conftest import build_model, build_tokenizer
    from test_rollout import bf16_agreement
    tokenizer = build_tokenizer()
    model = build_model("qwen2", len(tokenizer)).cuda()
    stats = bf16_agreement(model, rollout.prepare_tokenizer(tokenizer, model))
    return [("agree", "bf16 sampler vs bf16-autocast update forward, tiny Qwen2",
             f"mean |dlogp| {stats['mean_abs']:.4f}, max {stats['max_abs']:.3f} nats over {stats['tokens']} tokens")]


def run_sampler(max_new: int, rounds: int, peak_gbps: float) -> list:
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_rollout", ROOT / "bench" / "rollout.py")
    bench_rollout = sys.modules["bench_rollout"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_rollout)
    results = bench_rollout.bench_random_model(bench_rollout.qwen25_05b_config(), "cuda", (64, 256), max_new,
                                               rounds, peak_gbps)
    return [("sampler", f"0.5B bf16, {r['sequences']} seq x {max_new}, {r['sampler']}",
             f"{r['tokens_per_s']:,.0f} tok/s, {r['ratio_to_generate']:.2f}x generate, "
             f"{r['floor_fraction']:.1%} of the floor") for r in results]


def run_step(model: str, name: str, flags: list, steps: int, out: Path, timeout: float) -> list:
    """`steps` GRPO steps of train_grpo.py on `model` in a subprocess; the last step's seconds and peak
    memory per phase."""
    folder = Path(tempfile.mkdtemp(prefix=f"step-{name}-"))
    cmd = [sys.executable, "train_grpo.py", "--model", model, "--dataset", "synthetic:3",
           "--max_steps", str(steps), "--eval_every", "0", "--save_every", "0", "--plot", "false",
           "--log_rollouts", "0", "--cuda_graphs", "true", "--out_dir", str(folder / "run"), *flags]
    label = f"{name} {' '.join(flags)}".strip()
    try:
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        log, status = done.stdout + done.stderr, f"exit {done.returncode}"
    except subprocess.TimeoutExpired as e:
        log, status = (e.stdout or b"").decode() + (e.stderr or b"").decode(), f"timed out after {timeout:.0f} s"
    (out / f"step_{name}.log").write_text(" ".join(cmd) + "\n" + log)
    metrics = folder / "run" / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    subprocess.run(["rm", "-rf", str(folder)])   # the checkpoint of a 3B run is 12 GB
    if not rows:
        tail = log.strip().splitlines()[-1:] or ["no output"]
        return [("step", label, f"no step finished ({status}): {tail[0][:160]}")]
    last = rows[-1]
    seconds = ", ".join(f"{p} {last[p + '_seconds']:.1f}" for p in PHASES)
    peaks = ", ".join(f"{p} {last[p + '_peak_gib']:.1f}" for p in ("sample", "old_logp", "update")
                      if p + "_peak_gib" in last)
    return [("step", f"{label}: step {last['step']} seconds", seconds),
            ("step", f"{label}: peak GiB", peaks or "not logged"),
            ("step", f"{label}: response tokens", f"mean {last['response_len_mean']:.0f}, "
                                                  f"{last['sample_tokens_per_s']:,.0f} tok/s sampled")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", default=os.environ.get("OUT") or str(ROOT / "runs" / "gpu_check"))
    parser.add_argument("--budget_s", type=float, default=470, help="stop starting sections after this")
    parser.add_argument("--only", default="tests,agree,sampler,step", help="comma-separated sections")
    parser.add_argument("--max_new_tokens", type=int, default=1024, help="sampler section")
    parser.add_argument("--rounds", type=int, default=1, help="sampler section: rounds of each sampler")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU here; make gpu-check runs on a GPU machine")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import transformers
    gpu = torch.cuda.get_device_name()
    peak_gbps = next((v for k, v in PEAK_BANDWIDTH.items() if k in gpu), 3350.0)
    rows = [("env", "GPU", f"{gpu}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB, "
                           f"floor at {peak_gbps:.0f} GB/s"),
            ("env", "software", f"torch {torch.__version__}, transformers {transformers.__version__}, "
                                f"Python {platform.python_version()}")]
    start, only = time.time(), args.only.split(",")
    left = lambda: args.budget_s - (time.time() - start)   # noqa: E731

    def section(name, fn, *fn_args, need=30.0):
        if name.split(":")[0] not in only:
            return
        if left() < need:
            rows.append((name, "not run", f"{left():.0f} s of the budget left, needs about {need:.0f}"))
            return
        t0 = time.time()
        try:
            rows.extend(fn(*fn_args))
        except Exception as e:   # a section that breaks is a row of the table, not the end of the check
            rows.append((name, "error", f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
        rows.append((name, "seconds", f"{time.time() - t0:.0f}"))
        print(f"[{time.time() - start:.0f} s] {name} done", file=sys.stderr, flush=True)

    section("tests", lambda: run_tests(out, min(150, left())))
    section("agree", run_agreement)
    section("sampler", run_sampler, args.max_new_tokens, args.rounds, peak_gbps, need=90)
    for name, flags, steps in STEP_MODELS:
        section(f"step:{name}", lambda n=name, f=flags, s=steps: run_step(f"random:configs/{n}", n, f, s, out, left()),
                need=45)

    width = max(len(what) for _, what, _ in rows)
    table = "\n".join(f"| {sec:7} | {what:{width}} | {value} |" for sec, what, value in rows)
    print("\n" + table)
    (out / "gpu_check.md").write_text(table + "\n")
    (out / "gpu_check.json").write_text(json.dumps([dict(section=s, what=w, value=v) for s, w, v in rows], indent=1))
    print(f"\n{time.time() - start:.0f} s in all; table and logs in {out}", file=sys.stderr)


if __name__ == "__main__":
    main()

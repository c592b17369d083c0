"""The paper's ablation, one command: GRPO vs HICRA vs its placebo and entropy baselines.

    python ablation.py --preset cpu            # offline: SmolLM2-135M, sums solved step by step, 2 CPU cores
    python ablation.py --preset gpu            # Qwen2.5-0.5B on MATH levels 3-5, one GPU
    python ablation.py --preset gpu --gpus 0,1,2,3   # the same runs, four at a time, one per GPU
    python ablation.py --preset gpu --gpus 0,1,2,3 --ranks_per_run 2   # two at a time, each on 2 GPUs (torchrun)
    python ablation.py --preset paper_qwen3_4b_instruct --gpus 0,1,2,3,4,5,6,7 --ranks_per_run 8   # a paper run

Six methods, the same seeds, data, budget and settings (only the method differs):
  grpo           train_grpo.py                              the baseline (clip-higher, no KL)
  hicra          train_hicra.py --mask strategic            A + alpha|A| on Strategic Gram tokens
  placebo_grams  train_hicra.py --mask random_grams         the paper's placebo: a random n-gram list
  placebo        train_hicra.py --mask random               random spans, exactly as many tokens as the grams
  entropy_reg    train_grpo.py --entropy_coef C             GRPO plus a token-entropy bonus
  high_entropy   train_hicra.py --mask entropy              amplification on the top-30% entropy tokens
                                                            (this project's reading of the paper's baseline)
and, asked for with --methods, the loss choices of the field (README "Modifying it"):
  gspo           train_grpo.py --ratio_level sequence       one importance ratio per response, clipped at
                 --eps_low 3e-4 --eps_high 4e-4             GSPO's range (a response's ratio is a geometric mean)
  cispo          train_grpo.py --loss cispo                 the clipped ratio as a detached weight
  reinforce      train_grpo.py --loss reinforce             no ratio, no clip
  top_entropy    train_grpo.py --top_entropy_quantile 0.2   the policy term on the top 20% of tokens by entropy
On-policy (one PPO epoch and one mini-batch, as the cpu and gpu presets) gspo, cispo and reinforce take GRPO's
gradient: give them -- --mini_batches 4 (the command says so).
Every run logs the planning-token metrics with the paper's list (all get --grams), so curves compare
side by side. The paper's placebo list of each seed, <out>/placebo_grams-s<seed>.txt, is drawn once
from the base model's own responses to training problems (strategic_grams.placebo_grams).

Each run is a subprocess writing to <out>/<method>-s<seed>; a finished run is skipped and an
interrupted one resumed, so re-running the command picks up where it stopped. Then, per run,
the final checkpoint is evaluated (the GPU preset runs eval.py on MATH500, AMC23 and AIME24; the
CPU preset reads the in-loop accuracy on the held-out problems, which training never sees, after the
last step), and it writes
<out>/ablation.png (plot.py) and <out>/results.md (mean and spread over seeds).
"""

import argparse
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

METHODS = {
    "grpo": ["train_grpo.py"],
    "hicra": ["train_hicra.py", "--mask", "strategic"],
    "placebo_grams": ["train_hicra.py", "--mask", "random_grams", "--placebo_grams", "{placebo_grams}"],
    "placebo": ["train_hicra.py", "--mask", "random"],
    "entropy_reg": ["train_grpo.py", "--entropy_coef", "{entropy_coef}"],
    "high_entropy": ["train_hicra.py", "--mask", "entropy"],
    # The loss choices HICRA is compared against (README "Modifying it"), by --methods only.
    "gspo": ["train_grpo.py", "--ratio_level", "sequence", "--eps_low", "3e-4", "--eps_high", "4e-4"],   # GSPO's clip
    "cispo": ["train_grpo.py", "--loss", "cispo"],
    "reinforce": ["train_grpo.py", "--loss", "reinforce"],
    "top_entropy": ["train_grpo.py", "--top_entropy_quantile", "0.2"],
}
PAPER_SIX = ["grpo", "hicra", "placebo_grams", "placebo", "entropy_reg", "high_entropy"]   # the presets' default
ROOT = Path(__file__).resolve().parent   # the scripts run from any directory
sys.path.insert(0, str(ROOT))
import presets  # noqa: E402
import runfolder  # noqa: E402
from data import STRATEGIC_GRAMS  # noqa: E402

PRESETS = {
    # Sums solved step by step (train_grpo's cpu_ablation preset): small steps, three seeds; every rollout
    # of a run is logged, so `strategic_grams.py mine --run` can mine the policy's own successful responses.
    "cpu": dict(train=["--preset", "cpu_ablation", "--batch_size", "4", "--max_steps", "12", "--eval_every", "6",
                       "--eval_size", "32", "--save_every", "6", "--log_rollouts", "32", "--log_tokens", "true",
                       "--log_failures", "32"],   # every failure: 12 steps in 4 spans hold too few at 4 a step
                seeds=[0, 1, 2], entropy_coef=0.01, eval=None),
    # Sized for one 80 GB GPU (not run yet; cost estimate in the README): the paper's G = 8, lr 1e-6,
    # responses up to 2048 tokens, strict \boxed{} rewards, and 4 mini-batches a step, so that the ratio
    # moves and clip-higher acts (the paper's baseline is "GRPO with clip-higher").
    "gpu": dict(train=["--model", "Qwen/Qwen2.5-0.5B", "--prompt_style", "plain", "--dataset", "math:train_level3to5", "--batch_size", "32",
                       "--group_size", "8", "--max_new_tokens", "2048", "--lr", "1e-6", "--max_steps", "300",
                       "--eval_every", "50", "--save_every", "25", "--micro_batch_tokens", "32768",
                       "--grad_checkpointing", "--mini_batches", "4", "--strict_box", "true",
                       "--log_tokens", "true"],   # at most 256 x 2048 x 12 B = 6 MB a step, for strategic_grams.py metrics
                seeds=[0, 1, 2], entropy_coef=0.001,
                eval=["--benchmarks", "math500,amc23,aime24", "--protocol", "paper", "--max_new_tokens", "2048"]),
}
# The paper's comparison for each of its runs (presets.py), each run on the GPUs of one node (torchrun, FSDP):
#     python ablation.py --preset paper_qwen3_4b_instruct --gpus 0,1,2,3,4,5,6,7 --ranks_per_run 8
# GRPO and HICRA with one seed, as Table 1 reports them (--methods adds the baselines, --seeds more seeds),
# evaluated with the paper's protocol on its six benchmarks at the final response length, so that no answer is
# cut shorter than training let it grow (eval.py --batch_size: the preset's sample_rows, the KV cache per GPU).
for _name, _cfg in presets.PAPER.items():
    PRESETS[_name] = dict(train=["--preset", _name], seeds=[0], methods=["grpo", "hicra"],
                          entropy_coef=0.001,   # the entropy baseline's bonus, if asked for (chosen: the gpu preset's)
                          eval=["--benchmarks", "aime24,aime25,math500,amc23,minerva_math,olympiadbench", "--protocol",
                                "paper", "--max_new_tokens", str(_cfg["max_new_tokens_final"]),
                                "--batch_size", str(_cfg["sample_rows"])])


def run_dir(out: Path, method: str, seed: int) -> Path:
    return out / f"{method}-s{seed}"


def read_metrics(folder: Path) -> list[dict]:
    """A run's metrics rows. A last line cut short by a crash is left out (the run's --resume drops it too);
    any other line that is not a row, or a step logged twice (two writers on one folder), stops the
    ablation in one line: a table from such a file would be wrong without a warning."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return []
    text = path.read_text(errors="replace")
    lines = text.splitlines()
    if text and not text.endswith("\n"):
        lines = lines[:-1]
    rows, steps = [], set()
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (ValueError, KeyError, TypeError):
            sys.exit(f"error: {path}:{number}: not a metrics row; move the folder aside to run it again")
        if step in steps:
            sys.exit(f"error: {path}:{number}: step {step} is logged twice (two runs wrote this folder at once?); "
                     f"move the folder aside to run it again")
        steps.add(step)
        rows.append(row)
    return rows


def finished(folder: Path, max_steps: int, evaluates: bool) -> bool:
    """The last step is logged, and so is the evaluation after it (a row of its own, step max_steps)."""
    rows = read_metrics(folder)
    return bool(rows) and rows[-1]["step"] + 1 >= max_steps + evaluates


def run_config(args: list[str]):
    """The config the training runs get from `args`, as the trainers parse them (a --preset in them included;
    flags after -- override the preset's)."""
    import train_grpo
    import train_hicra
    return train_grpo.parse_config(args, train_hicra.HicraConfig, train_hicra.CHECKS)


def train_all(preset: dict, out: Path, methods, seeds, extra, gpus=(), ranks=1):
    """Every run not finished yet, one after the other; with `gpus`, one run per GPU at a time
    (CUDA_VISIBLE_DEVICES), the next starting on whichever GPU frees first. The runs are independent,
    so for seeds and baselines this beats spreading one run over the GPUs. With ranks > 1 each run is
    launched by torchrun on that many processes (and takes that many of the GPUs)."""
    args = preset["train"] + extra
    cfg = run_config(args)
    max_steps, evaluates = cfg.max_steps, cfg.eval_every > 0
    todo = []
    for seed in seeds:
        for method in methods:
            folder = run_dir(out, method, seed)
            if finished(folder, max_steps, evaluates):
                print(f"[ablation] {folder.name}: done, skipped")
                continue
            placebo = out / f"placebo_grams-s{seed}.txt"
            if method == "placebo_grams":
                make_placebo_list(args, seed, placebo)
            script, *flags = [a.format(entropy_coef=preset["entropy_coef"], placebo_grams=placebo)
                              for a in METHODS[method]]
            launcher = [sys.executable] if ranks == 1 else \
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
            command = [*launcher, str(ROOT / script), *flags, *args, "--seed", str(seed),
                       "--grams", str(STRATEGIC_GRAMS),
                       "--out_dir", str(folder), "--plot", "false"]
            if (folder / "metrics.jsonl").exists():
                command.append("--resume")
            todo.append((folder, command))
    slots = [",".join(gpus[i:i + ranks]) for i in range(0, len(gpus) - ranks + 1, ranks)]   # GPUs of a run
    if gpus and not slots:
        sys.exit(f"error: --gpus {','.join(gpus)}: fewer GPUs than --ranks_per_run {ranks}")
    free, running = slots or [None], {}               # slot -> (process, folder, start time)
    with children_stop_with_us(running) as stop:
        while todo or running:
            while todo and free and not stop["requested"]:
                slot, (folder, command) = free.pop(0), todo.pop(0)
                env = os.environ | ({"CUDA_VISIBLE_DEVICES": slot} if slot is not None else {})
                where = f" on GPU {slot}" if slot is not None else ""
                print(f"[ablation] {folder.name}{where}: {' '.join(command[1:])}", flush=True)
                running[slot] = (start_child(command, env), folder, time.time())
            time.sleep(0.2)
            for slot, (process, folder, t0) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[slot]
                if process.returncode and not stop["requested"]:
                    signal_children(running, signal.SIGTERM)
                    sys.exit(f"error: the run in {folder} failed (exit {process.returncode}); the others were stopped. "
                             f"Run the same command to resume them")
                print(f"[ablation] {folder.name}: {time.time() - t0:.0f} s", flush=True)
                free.append(slot)
            if stop["requested"] and not running:
                sys.exit("interrupted: each run saved a checkpoint after its step; run the same command to resume")


def start_child(command: list[str], env: dict) -> subprocess.Popen:
    """A training run in a process group of its own (so that it, and torchrun's ranks, can be stopped as
    one), which the kernel ends if this process dies first, even by kill -9 (Linux: PR_SET_PDEATHSIG)."""
    parent = os.getpid()

    def die_with_parent():
        if sys.platform.startswith("linux"):
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        if os.getppid() != parent:   # the parent died before the line above took effect
            os._exit(1)

    return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_parent)


def signal_children(running: dict, sig: int):
    for process, _, _ in running.values():
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass


@contextmanager
def children_stop_with_us(running: dict):
    """Ctrl-C: every running run gets it too (it finishes its step and saves) and the ablation waits for
    them; a second Ctrl-C, or SIGTERM, ends them at once. stop["requested"] says the first came."""
    stop = {"requested": False}

    def on_interrupt(signum, frame):
        if stop["requested"] or signum == signal.SIGTERM:
            signal_children(running, signal.SIGKILL if signum == signal.SIGINT else signal.SIGTERM)
            sys.exit("interrupted: the runs were stopped without saving their step; run the same command to "
                     "resume them from their last checkpoints")
        stop["requested"] = True
        signal_children(running, signal.SIGINT)
        print("\n[ablation] stopping: each run finishes its step and saves (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    previous = {sig: signal.signal(sig, on_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def make_placebo_list(train_args: list[str], seed: int, path: Path, prompts: int = 64, samples: int = 4):
    """The paper's placebo list for one seed, once: random n-grams of the base model's own responses to
    training problems that mark as much of them as the real list (strategic_grams.placebo_grams)."""
    if path.exists():
        return
    import rollout
    import strategic_grams
    import train_grpo
    import train_hicra
    cfg = train_grpo.parse_config([*train_args, "--seed", str(seed), "--grams", str(STRATEGIC_GRAMS)],
                                  train_hicra.HicraConfig, train_hicra.CHECKS)
    problems = train_grpo.load_data(cfg)[0][:prompts]
    model, tokenizer = rollout.load_model(cfg.model, device=cfg.device)
    prompts = rollout.encode_problems(tokenizer, problems, cfg.prompt_style, cfg.instruction)
    out = rollout.sample(model, prompts, cfg.max_new_tokens, temperature=cfg.temperature, eos_token_id=tokenizer.stop_token_ids,
                         seed=seed, n=samples, pad_token_id=tokenizer.pad_token_id, max_rows=cfg.sample_rows)
    texts = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    real = strategic_grams.load_grams(cfg.grams)
    picked = strategic_grams.placebo_grams(texts, real, seed=seed)
    if not picked:
        sys.exit(f"error: placebo_grams: the gram list marks nothing in {len(texts)} responses of {cfg.model}, so the "
                 f"paper's placebo would be empty; leave it out of --methods")
    share = functools.partial(strategic_grams.marked_share, texts)
    strategic_grams.save_gram_list(path, picked, [
        f"The paper's placebo list for seed {seed}: random n-grams of {len(texts)} responses of {cfg.model} to training problems",
        f"{len(picked)} grams mark {share(picked):.2%} of those responses' characters; the real list marks {share(real):.2%}"])
    print(f"[ablation] {path.name}: {len(picked)} grams", flush=True)


def evaluate_all(preset: dict, out: Path, methods, seeds) -> dict:
    """{method: {metric: [value per seed]}}."""
    results = {}
    for method in methods:
        for seed in seeds:
            folder = run_dir(out, method, seed)
            logged = read_metrics(folder)
            rows = [r for r in logged if "reward_mean" in r]      # training steps (the last row may be eval only)
            tail = rows[-max(1, len(rows) // 4):]                # the last quarter of training
            values = {
                "train reward (last 25%)": statistics.mean(r["reward_mean"] for r in tail),
                "response length (last 25%)": statistics.mean(r["response_len_mean"] for r in tail),
                "semantic entropy (last 25%)": statistics.mean(r.get("semantic_entropy", float("nan")) for r in tail),
                "planning tokens (last 25%)": statistics.mean(r.get("planning_token_frac", float("nan")) for r in tail),
            }
            evals = [r["eval_accuracy"] for r in logged if "eval_accuracy" in r]
            if evals:   # the first is the base model's (before step 0), the last the trained policy's
                values["held-out accuracy (step 0)"] = evals[0]
                values["held-out accuracy (final)"] = evals[-1]
            if preset["eval"]:
                eval_dir = folder / "eval"
                subprocess.run([sys.executable, str(ROOT / "eval.py"), "--model", str(folder / "ckpt"), "--out_dir",
                                str(eval_dir), "--seed", str(seed), *preset["eval"]], check=True)
                summary = json.loads((eval_dir / "summary.json").read_text())
                for bench, s in summary.items():
                    values[f"{bench} avg@k"] = next(v for k, v in s.items() if k.startswith("avg@"))
            for key, v in values.items():
                results.setdefault(method, {}).setdefault(key, []).append(v)
    return results


# Student's t, two-sided 95%, by degrees of freedom (seeds - 1): a 95% interval from a few seeds.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def interval(xs: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t-interval over seeds); half-width 0 for one seed."""
    mean = statistics.mean(xs)
    if len(xs) < 2:
        return mean, 0.0
    return mean, T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / len(xs) ** 0.5


def table(results: dict, seeds) -> str:
    """Markdown: one row per method, the mean over seeds with its 95% interval (mean ± half-width)."""
    columns = list(next(iter(results.values())).keys())
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " ---: |" * len(columns)]
    for method, values in results.items():
        cells = []
        for c in columns:
            mean, half = interval(values[c])
            cells.append(f"{mean:.3f} ± {half:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\nmean ± half-width of the 95% t-interval over seeds {', '.join(map(str, seeds))} "
                               f"(t with {len(seeds) - 1} degrees of freedom)\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Flags after -- go to every training run, e.g. -- --max_steps 4")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    parser.add_argument("--out", default="", help="output folder (default: runs/ablation-<preset>)")
    parser.add_argument("--methods", default="", help="comma-separated subset of the methods (default: the preset's, "
                        "else all six)")
    parser.add_argument("--seeds", default="", help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--gpus", default="", help="comma-separated GPU ids: one run per GPU at a time (e.g. 0,1,2,3)")
    parser.add_argument("--ranks_per_run", type=int, default=1,
                        help="launch each run with torchrun on this many processes (GPUs, with --gpus)")
    args, extra = parser.parse_known_args(argv)
    extra = [a for a in extra if a != "--"]
    preset = PRESETS[args.preset]
    methods = args.methods.split(",") if args.methods else preset.get("methods", PAPER_SIX)
    ratio_methods, cfg = [m for m in methods if m in ("gspo", "cispo", "reinforce")], run_config(preset["train"] + extra)
    if ratio_methods and cfg.ppo_epochs * cfg.mini_batches == 1:
        print(f"[ablation] note: {', '.join(ratio_methods)} take GRPO's gradient on-policy (one PPO epoch, one "
              f"mini-batch): add -- --mini_batches 4 for them to differ", file=sys.stderr)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        sys.exit(f"error: --methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else preset["seeds"]
    out = Path(args.out or f"runs/ablation-{args.preset}")
    try:   # one ablation per folder (each run also locks its own folder)
        runfolder.acquire(out, "ablation.py")
    except (runfolder.FolderError, OSError) as e:
        sys.exit(f"error: --out {getattr(e, 'strerror', None) or e}")

    try:
        run_ablation(args, preset, out, methods, seeds, extra)
    finally:
        runfolder.release(out)


def run_ablation(args, preset: dict, out: Path, methods, seeds, extra):
    t0 = time.time()
    if args.ranks_per_run < 1:
        sys.exit(f"error: --ranks_per_run {args.ranks_per_run}: needs an integer >= 1")
    train_all(preset, out, methods, seeds, extra, [g.strip() for g in args.gpus.split(",") if g.strip()],
              args.ranks_per_run)
    results = evaluate_all(preset, out, methods, seeds)
    import plot
    plot.plot_runs([run_dir(out, m, seeds[0]) for m in methods], out / "ablation.png", labels=methods, smoothing=0.5)
    text = table(results, seeds)
    runfolder.write_text(out / "results.md", text)
    print(text)
    print(f"[ablation] {time.time() - t0:.0f} s; figure {out / 'ablation.png'}, table {out / 'results.md'}")


if __name__ == "__main__":
    main()

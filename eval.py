"""Benchmark harness: sample K answers per problem, grade them, report avg@k, pass@k and maj@k.

    python eval.py --model runs/grpo --benchmarks aime24,math500 --samples 4 --temperature 0.6
    python eval.py --model Qwen/Qwen2.5-0.5B --protocol paper      # the paper's Table 1 setting

--model is anything rollout.load_model takes, a checkpoint folder (`<run>/ckpt`, a plain HF folder)
or a run folder holding one. A run folder's config.json also gives the default prompt style.

Metrics per benchmark, over n problems with K samples each (c of them correct):
  avg@K   mean accuracy over all n*K samples: the paper's "Pass@1 averaged over K samples"
  pass@k  chance that at least one of k samples drawn from the K is right, for k = 1, 2, 4, ... and K,
          by the unbiased estimator 1 - C(K-c, k) / C(K, k) (pass@1 equals avg@K)
  maj@K   the most common extracted answer is right. Answers group by reward.verify equivalence
          with each group's first answer (so `1/2` and `0.5` vote together); samples without an
          answer don't vote; ties go to the answer seen first; the vote is right if that first
          sample of the winning group was graded right.

Benchmarks map to data sets: `gsm8k` -> `gsm8k:test` (the bare name would be the train split), the
others to their only split. `--protocol paper` means DeepSeek-R1's sampling as the paper uses it,
temperature 0.6 and top-p 0.95, strict \\boxed{} grading and 32 samples on AIME24/25, 4 on AMC23, 1
elsewhere; a flag given explicitly wins over it.
Temperature 0 is greedy: every sample would be the same, so K is capped at 1.

Output in --out_dir: `<benchmark>.jsonl` (one line per sample: id, sample index, extracted answer,
correct, gold, tokens, finished, output), `summary.json` ({benchmark: metrics}, merged with what
was there) and `config.json` (the settings the samples were made with). Re-running resumes: finished
samples are kept and only the missing (problem, sample) pairs are generated; lines are appended after
every batch, so Ctrl-C loses at most one batch. A folder made with other settings, or with other
weights (a sha256 of the checkpoint's weight files, so a run trained further is a new model), is refused.

Seeds: the sampler draws a batch from one generator, so a seed per sample would mean batches of
one. Instead the missing pairs are ordered by (sample index, problem) and cut into batches of
--batch_size; each batch's seed is crc32 of (seed, benchmark, its first problem id, its first sample
index). An interrupted run resumed with the same flags therefore makes the same batches with the
same seeds as an uninterrupted one (bit for bit on one device).
"""

import argparse
import hashlib
import json
import math
import sys
import zlib
from pathlib import Path

import torch
from tqdm import tqdm

import checks
import reward
import rollout
import runfolder
from checks import at_least, fraction, non_negative
from data import DataError, load_problems

BENCHMARKS = {"aime24": "aime24", "aime25": "aime25", "amc23": "amc23", "math500": "math500",
              "gsm8k": "gsm8k:test", "minerva_math": "minerva_math", "olympiadbench": "olympiadbench",
              # vision-language (the paper's Table 2; data/prepare.py), and an offline check of the plumbing (the
              # synthetic sums drawn as images: the generator of a synthetic_image:1 training run, not held out)
              "mathvista": "mathvista:testmini", "mathvision": "mathvision:test", "mathverse": "mathverse:testmini",
              "emma": "emma:test", "synthetic_image": "synthetic_image:1"}
PAPER_BENCHMARKS = "aime24,aime25,amc23,math500,minerva_math,olympiadbench"
PAPER_VISION_BENCHMARKS = "mathvista,mathvision,mathverse,emma"   # for a VLM: --benchmarks with these
PAPER_SAMPLES = {"aime24": 32, "aime25": 32, "amc23": 4}  # 1 elsewhere
SETTINGS = ("model", "weights", "prompt_style", "temperature", "top_p", "max_new_tokens", "strict", "seed")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k).

    As a product, C(n-c, k) / C(n, k) = prod_{i=n-c+1..n} (1 - k/i), which never forms the huge
    binomials (C(32, 16) is fine, C(1000, 500) overflows a float)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority(samples: list[dict]):
    """(answer, correct) of the majority vote over one problem's samples, in sample order."""
    groups, group_of = [], {}  # groups: [first answer, votes, first sample]; group_of: answer -> index
    for s in samples:
        a = s.get("answer")
        if a is None:
            continue
        if a not in group_of:  # the same string never needs the (slower) equivalence check twice
            # Wrapped in a box so verify reads the whole string as the answer, not its last number.
            group_of[a] = next((g for g, (rep, _, _) in enumerate(groups)
                                if reward.verify(f"\\boxed{{{a}}}", rep)), len(groups))
            if group_of[a] == len(groups):
                groups.append([a, 0, s])
        groups[group_of[a]][1] += 1
    if not groups:
        return None, False
    rep, _, first = max(groups, key=lambda g: g[1])  # max keeps the first of equal counts
    return rep, bool(first["correct"])


def summarize(samples: list[dict], k: int, ids=None) -> dict:
    """Metrics of one benchmark from its sample records (dicts with id, sample, answer, correct).

    Uses samples 0..k-1 of each problem in `ids` (default: every id in `samples`); all must exist."""
    ids = list(dict.fromkeys(s["id"] for s in samples)) if ids is None else list(ids)
    table = {i: [None] * k for i in ids}
    for s in samples:
        if s["id"] in table and s["sample"] < k:
            table[s["id"]][s["sample"]] = s
    missing = sum(x is None for row in table.values() for x in row)
    if missing or not table:
        raise ValueError(f"{missing} of {len(table) * k} samples missing")
    correct = [sum(bool(s["correct"]) for s in row) for row in table.values()]
    n = len(table)
    metrics = {f"avg@{k}": sum(correct) / (n * k)}
    for kk in sorted({2 ** e for e in range(k.bit_length()) if 2 ** e <= k} | {k}):
        metrics[f"pass@{kk}"] = sum(pass_at_k(k, c, kk) for c in correct) / n
    metrics[f"maj@{k}"] = sum(majority(row)[1] for row in table.values()) / n
    rows = [s for row in table.values() for s in row]
    metrics.update(n=n, samples=k)
    if all("tokens" in s for s in rows):  # absent from hand-written files
        metrics["mean_tokens"] = sum(s["tokens"] for s in rows) / len(rows)
        metrics["truncated"] = sum(not s.get("finished", True) for s in rows) / len(rows)
    return metrics


def read_samples(path: Path) -> list[dict]:
    """The records of a per-sample file. A line cut short by Ctrl-C is dropped (and the file
    rewritten without it, so the next append starts on a fresh line)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    samples, seen = [], set()
    for line in lines:
        try:
            s = json.loads(line)
            key = (s["id"], s["sample"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if key not in seen:
            seen.add(key)
            samples.append(s)
    if len(samples) != len(lines) or (text and not text.endswith("\n")):
        runfolder.write_text(path, "".join(json.dumps(s) + "\n" for s in samples))
    return samples


def resolve_model(name: str):
    """(what load_model gets, the run's prompt style or "" for a model that is not a run). A run folder stands
    for its checkpoint; one made before runs recorded their style gets the style it was made with."""
    path = Path(name).expanduser()
    path = next(iter(rollout.checkpoints(path)), path)
    if not path.is_dir():
        return name, ""
    run_config = path.parent / "config.json"  # train_grpo's config, beside its ckpt
    try:
        run = json.loads(run_config.read_text())
        return str(path.resolve()), str(run.get("prompt_style") or rollout.prompt_style_before_it_was_recorded(
            str(run["model"])))
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return str(path.resolve()), ""


def weights_fingerprint(source: str) -> str | None:
    """sha256 of a local model folder's weight files (None for a Hub id or alias). A run folder's
    checkpoint is rewritten as training goes on, so its path alone does not say which weights made
    the samples already in --out_dir."""
    folder = Path(source)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".pt", ".gguf") and f.name != "trainer_state.pt":
            with open(f, "rb") as handle:
                digest.update(f.name.encode() + hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()[:16]


def sample_and_grade(model, tokenizer, prompts, golds, max_new_tokens, temperature, top_p, seed, strict,
                     graphs=False, max_rows=0):
    """One sampler call on prompt token ids (max_rows sequences at a time, 0 = all), and each answer graded
    against its gold answer: (decoded outputs, correct flags, the Rollout). Used here and by train_grpo's
    in-loop evaluation."""
    out = rollout.sample(model, prompts, max_new_tokens, temperature=temperature, top_p=top_p,
                         eos_token_id=tokenizer.stop_token_ids, seed=seed, pad_token_id=tokenizer.pad_token_id,
                         graphs=graphs, max_rows=max_rows)
    outputs = tokenizer.batch_decode(out.completion_ids, skip_special_tokens=True)
    return outputs, [reward.verify(o, g, strict=strict) for o, g in zip(outputs, golds)], out


def generate(model, tokenizer, bench, problems, k, args, path):
    """Sample what `path` lacks of problems x samples 0..k-1, appending each batch to `path`."""
    done = {(s["id"], s["sample"]) for s in read_samples(path)}
    todo = [(j, i) for j in range(k) for i, p in enumerate(problems) if (p["id"], j) not in done]
    needed = sorted({i for _, i in todo})
    # lengths now; prompts batch by batch (a VLM's processed images of a whole benchmark would not fit in memory)
    lengths = dict(zip(needed, rollout.prompt_lengths(tokenizer, [problems[i] for i in needed], args.prompt_style)))
    max_new = args.max_new_tokens
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    if lengths and context and max(lengths.values()) + max_new > context:
        too_long = sum(n >= context for n in lengths.values())
        if too_long:   # not even one new token fits
            raise ValueError(f"{bench}: {too_long} problem prompts fill the model's whole context of {context} "
                             "tokens; evaluate a model with a longer context")
        max_new = context - max(lengths.values())
        print(f"{bench}: --max_new_tokens cut to {max_new} to fit the context of {context}", file=sys.stderr)
    right = 0
    with runfolder.open_append(path) as f, tqdm(total=len(todo), desc=bench, unit="sample",
                                                dynamic_ncols=True, file=sys.stderr) as bar:
        for start in range(0, len(todo), args.batch_size):
            batch = todo[start:start + args.batch_size]
            seed = zlib.crc32(f"{args.seed}:{bench}:{problems[batch[0][1]]['id']}:{batch[0][0]}".encode())
            prompts = rollout.encode_problems(tokenizer, [problems[i] for _, i in batch], args.prompt_style)
            outputs, correct, out = sample_and_grade(model, tokenizer, prompts,
                                                     [problems[i]["answer"] for _, i in batch], max_new,
                                                     args.temperature, args.top_p, seed, args.strict,
                                                     graphs=args.cuda_graphs)
            records = [{"id": problems[i]["id"], "sample": j, "answer": reward.extract_answer(text, strict=args.strict),
                        "correct": right, "gold": problems[i]["answer"], "tokens": len(ids), "finished": finished,
                        "output": text}
                       for (j, i), text, right, ids, finished in zip(batch, outputs, correct, out.completion_ids,
                                                                     out.finished)]
            f.write("".join(json.dumps(r) + "\n" for r in records))  # whole lines, one write, flushed:
            f.flush()                                                  # Ctrl-C loses at most this batch
            right += sum(r["correct"] for r in records)
            bar.set_postfix(acc=f"{right / (start + len(batch)):.3f}")  # of this run's new samples
            bar.update(len(batch))


def markdown_table(summary: dict) -> str:
    rows = ["| benchmark | k | avg@k | pass@k | maj@k | n |", "|---|---:|---:|---:|---:|---:|"]
    for bench, m in summary.items():
        k = m["samples"]
        rows.append(f"| {bench} | {k} | {100 * m[f'avg@{k}']:.1f} | {100 * m[f'pass@{k}']:.1f} "
                    f"| {100 * m[f'maj@{k}']:.1f} | {m['n']} |")
    return "\n".join(rows)


CHECKS = [   # what each numeric flag needs (see checks.py)
    ("samples", at_least(1), "an integer >= 1"),
    ("temperature", non_negative, "a number >= 0 (0 = greedy)"),
    ("top_p", fraction, "a number in (0, 1]"),
    ("max_new_tokens", at_least(1), "an integer >= 1"),
    ("batch_size", at_least(1), "an integer >= 1"),
    ("limit", at_least(1), "an integer >= 1"),
]


def parse_args(argv=None):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="smollm2-135m", help="HF folder, Hub id, smollm2-135m, or a run/ckpt folder")
    p.add_argument("--benchmarks", default=PAPER_BENCHMARKS, help="comma-separated: " + ",".join(BENCHMARKS))
    p.add_argument("--protocol", choices=["paper"], default=None,
                   help="paper: temperature 0.6, top-p 0.95, strict boxes, 32 samples on AIME, 4 on AMC23, else 1")
    p.add_argument("--samples", type=int, default=None, help="samples per problem K (default 1, or the protocol's)")
    p.add_argument("--temperature", type=float, default=None, help="0 = greedy (default 0.6)")
    p.add_argument("--top_p", type=float, default=None, help="default 1, or 0.95 under --protocol paper")
    p.add_argument("--max_new_tokens", type=int, default=4096 if cuda else 1024)
    p.add_argument("--prompt_style", choices=["chat", "plain"], default=None,
                   help="default: the run's, else chat if the tokenizer has a chat template, else plain")
    p.add_argument("--strict", action=argparse.BooleanOptionalAction, default=None,
                   help="grade \\boxed{} answers only (default: on under --protocol paper)")
    p.add_argument("--batch_size", type=int, default=64 if cuda else 16, help="sequences per sampler call")
    p.add_argument("--data_dir", default=None, help="default: $HICRA_DATA_DIR, else ../shared/data")
    p.add_argument("--out_dir", default="runs/eval")
    p.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cuda_graphs", action="store_true", help="decode through captured CUDA graphs (rollout.DecodeGraphs)")
    args = p.parse_args(argv)
    paper = args.protocol == "paper"
    for flag, value in (("samples", args.samples), ("temperature", args.temperature), ("top_p", args.top_p),
                        ("strict", args.strict)):
        if paper and value is not None:
            print(f"--protocol paper: --{flag} {value} overrides the protocol", file=sys.stderr)
    args.temperature = 0.6 if args.temperature is None else args.temperature
    args.top_p = (0.95 if paper else 1.0) if args.top_p is None else args.top_p
    args.strict = paper if args.strict is None else args.strict
    message = checks.problem(vars(args), CHECKS) or checks.device_problem(args.device)
    if message:
        sys.exit(f"error: {message}")
    return args


def main(argv=None):
    args = parse_args(argv)
    benches = [b.strip() for b in args.benchmarks.split(",") if b.strip()]
    unknown = [b for b in benches if b not in BENCHMARKS]
    if unknown or not benches:
        sys.exit(f"error: unknown benchmark {', '.join(unknown) or '(none given)'}; valid: {', '.join(BENCHMARKS)}")
    samples = {b: args.samples or (PAPER_SAMPLES.get(b, 1) if args.protocol == "paper" else 1) for b in benches}
    if args.temperature == 0 and max(samples.values()) > 1:
        print("temperature 0 is greedy: every sample would be the same, so K is capped at 1", file=sys.stderr)
        samples = dict.fromkeys(benches, 1)
    source, style = resolve_model(args.model)
    try:   # recorded as used: chat if the tokenizer has a chat template, unless the run or the flag says otherwise
        args.prompt_style = args.prompt_style or style or rollout.prompt_style_of(source)
    except rollout.ModelLoadError as e:
        sys.exit(f"error: {e}")
    out_dir = Path(args.out_dir)
    settings = {key: getattr(args, key, None) for key in SETTINGS} | {"model": source,
                                                                        "weights": weights_fingerprint(source)}
    # Mixing samples made with other settings would silently report a blend of two evaluations.
    old = json.loads((out_dir / "config.json").read_text()) if (out_dir / "config.json").exists() else settings
    changed = [f"{key}={old.get(key)!r} (now {settings[key]!r})" for key in SETTINGS if old.get(key) != settings[key]]
    if changed:
        sys.exit(f"error: --out_dir {out_dir} holds samples made with {', '.join(changed)}; use another --out_dir")
    try:  # data errors before the (slow) model load; one evaluation writes a folder at a time
        problems = {b: load_problems(BENCHMARKS[b], data_dir=args.data_dir, limit=args.limit) for b in benches}
        runfolder.acquire(out_dir, "eval.py")
    except (DataError, runfolder.FolderError) as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: --out_dir {out_dir}: cannot write there ({e.strerror})")
    try:
        return evaluate_into(out_dir, args, benches, problems, samples, source, settings)
    finally:
        runfolder.release(out_dir)


def evaluate_into(out_dir, args, benches, problems, samples, source, settings):
    """Load the model, then sample, grade and summarise each benchmark into the (locked) out_dir."""
    try:
        model, tokenizer = rollout.load_model(source, device=args.device)
    except rollout.ModelLoadError as e:
        sys.exit(f"error: {e}")
    runfolder.write_text(out_dir / "config.json", json.dumps(settings, indent=2) + "\n")
    summary_path = out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    results = {}
    for b in benches:
        path = out_dir / f"{b}.jsonl"
        try:
            generate(model, tokenizer, b, problems[b], samples[b], args, path)
        except ValueError as e:   # prompts that cannot fit the model
            sys.exit(f"error: {e}")
        except KeyboardInterrupt:
            sys.exit(f"\ninterrupted: finished samples are kept in {out_dir}; run the same command to resume")
        except runfolder.FolderError as e:
            sys.exit(f"error: {e}")
        results[b] = summary[b] = summarize(read_samples(path), samples[b], ids=[p["id"] for p in problems[b]])
        runfolder.write_text(summary_path, json.dumps(summary, indent=2) + "\n")   # never half a summary
    print(markdown_table(results))
    return results


if __name__ == "__main__":
    main()

"""Benchmark: `strategic_grams.planning_mask` on 64 responses of 1,024 tokens, CPU.

HICRA computes a planning mask for every rollout of every step, so the mask must cost little
next to sampling. Target: under 50 ms for a batch of 64 x 1,024 tokens.

Work: SmolLM2-135M's tokenizer (the offline alias, converted once into HICRA_CACHE), the
default gram list data/strategic_grams.txt, and 64 responses built from real MATH train
solutions (consecutive solutions joined by blank lines and cut at exactly 1,024 tokens).
Every response is new text, but the tokenizer's per-id decode cache is warm after the warm-up
batch, as it is after the first training step.

Baseline, timed in the same run on the same inputs: the straightforward implementation, one
case-insensitive regex per gram (run over the text with `finditer`), token texts from an
uncached `tokenizer.decode([id])` per token, and a check of every token against every span.
Both produce the same masks (checked). The headline is the median over --rounds batches, as
wall time and as process CPU time (the CPU time is what it costs when other jobs share the cores).

    .venv/bin/python bench/planning_mask.py [--rounds 7] [--data_dir ../shared/data]
"""
import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rollout  # noqa: E402
import strategic_grams as sg  # noqa: E402
from data import resolve_data_dir  # noqa: E402


def build_responses(tokenizer, data_dir, n, length):
    """n token-id lists of exactly `length` tokens, from consecutive MATH train solutions."""
    path = Path(resolve_data_dir(data_dir)) / "math" / "train.jsonl"
    if not path.is_file():
        sys.exit(f"error: MATH train not found at {path} (use --data_dir)")
    responses, buf = [], []
    with path.open() as f:
        for line in f:
            buf += tokenizer.encode(json.loads(line)["solution"] + "\n\n", add_special_tokens=False)
            if len(buf) >= length:
                responses.append(buf[:length])
                buf = []
                if len(responses) == n:
                    return responses
    sys.exit(f"error: {path} holds too little text for {n} x {length} tokens")


def baseline_mask(tokenizer, ids, grams):
    """One regex per gram, uncached per-token decode, every token against every span."""
    pieces = [tokenizer.decode([t]) for t in ids]
    text = "".join(pieces)
    spans = []
    for g in grams:
        words = r"\s+".join(re.escape(w) for w in g.split())
        left = r"(?<!\w)" if re.match(r"\w", g) else ""
        right = r"(?!\w)" if re.search(r"\w$", g) else ""
        spans += [m.span() for m in re.finditer(left + words + right, text, re.IGNORECASE)]
    mask, pos = [], 0
    for piece in pieces:
        start, end = pos, pos + len(piece)
        pos = end
        mask.append(any(not text[i].isspace() for s, e in spans for i in range(max(s, start), min(e, end))))
    return mask


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--grams", default=str(sg.DEFAULT_GRAMS))
    p.add_argument("--data_dir", default=None)
    p.add_argument("--baseline_rounds", type=int, default=1, help="the baseline is slow; fewer rounds")
    args = p.parse_args()
    torch.set_num_threads(1)

    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(rollout.convert_gguf_alias("smollm2-135m"))
    grams = sg.load_grams(args.grams)
    n_batches = args.rounds + 1
    data = build_responses(tokenizer, args.data_dir, args.batch * n_batches, args.length)
    batches = [data[i * args.batch:(i + 1) * args.batch] for i in range(n_batches)]

    def ours(batch):
        return [sg.planning_mask(tokenizer, ids, grams) for ids in batch]

    ours(batches[0])  # warm-up: compiles the pattern, fills the per-id decode cache
    times, cpu = [], []
    for batch in batches[1:]:
        t0, c0 = time.perf_counter(), time.process_time()
        masks = ours(batch)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    ms, cpu_ms = 1000 * statistics.median(times), 1000 * statistics.median(cpu)

    # Where the time goes, on the last batch: token offsets vs matching.
    t0 = time.perf_counter()
    decoded = [sg._token_offsets(tokenizer, ids)[0] for ids in batches[-1]]
    t_offsets = time.perf_counter() - t0
    t0 = time.perf_counter()
    for text in decoded:
        sg.gram_spans(text, grams)
    t_match = time.perf_counter() - t0

    base_times = []
    for batch in batches[1:1 + args.baseline_rounds]:
        t0 = time.perf_counter()
        base = [baseline_mask(tokenizer, ids, grams) for ids in batch]
        base_times.append(time.perf_counter() - t0)
        assert base == ours(batch), "baseline and planning_mask disagree"
    base_ms = 1000 * statistics.median(base_times)

    planning = sum(map(sum, masks)) / sum(map(len, masks))
    print(f"grams: {len(grams)} from {args.grams}; responses: {args.batch} x {args.length} tokens "
          f"(MATH train solutions, SmolLM2 tokenizer); planning-token fraction {planning:.3f}")
    print(f"planning_mask: {ms:.1f} ms per batch wall, {cpu_ms:.1f} ms CPU time (medians of {len(times)}; "
          f"wall min {1000 * min(times):.1f}, max {1000 * max(times):.1f}); offsets {1000 * t_offsets:.1f} ms + matching "
          f"{1000 * t_match:.1f} ms on one batch")
    print(f"baseline (regex per gram, uncached decode): {base_ms:.0f} ms per batch "
          f"(median of {len(base_times)}); speed-up {base_ms / ms:.0f}x; masks identical")
    print(f"target under 50 ms: {'met' if ms < 50 else 'NOT met'} (wall), "
          f"{'met' if cpu_ms < 50 else 'NOT met'} (CPU time); load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()

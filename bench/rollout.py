"""Benchmark: tokens per second of `rollout.sample` against Hugging Face `model.generate`.

Sampling is most of an RL step, and `rollout.sample` exists only to be faster than `generate`
on RL-shaped work, so this measures exactly that, in one process on one machine:
  * CPU: the offline SmolLM2-135M, 8 prompts x 8 samples, up to --max_new_tokens new tokens,
    temperature 1, no top-k/top-p, rows stopping at the tokenizer's stop ids (lengths vary).
  * CUDA (only when a GPU is present): a randomly initialised model with Qwen2.5-0.5B's
    configuration (configs/qwen2.5-0.5b) in bf16, 64 and 256 sequences (8 per prompt) of exactly
    --max_new_tokens tokens (the EOS id is one the model cannot emit), our sampler eager and with
    graph-captured decoding (`graphs=True`), plus the fraction of the memory-bandwidth floor
    reached: each decode step must read all weights and the KV cache written so far.
All samplers get the same model, prompts, sampling settings, EOS ids and pad id. They run in turn
for --rounds rounds (order reversed every other round); the median of the per-round ratios to
`generate` is the headline. Generated tokens count up to and including each row's first EOS
(`generate` pads finished rows; padding is not counted). Mean completion lengths are printed
so a reader can check that all did the same amount of work.

    .venv/bin/python bench/rollout.py [--rounds 3] [--max_new_tokens 256] [--device cpu]
    python3 bench/rollout.py --skip_cpu --max_new_tokens 1024 --rounds 1     # the GPU part (make gpu-check)
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import rollout  # noqa: E402


def completion_lengths(rows, eos):
    """Tokens per row up to and including the first EOS (all of them if none)."""
    hits = torch.isin(rows, torch.tensor(eos, device=rows.device))            # [B, N]
    first = torch.where(hits.any(1), hits.int().argmax(1) + 1, rows.shape[1])  # [B]
    return first.tolist()


def run_ours(model, prompts, n, max_new, eos, pad, seed, graphs=False):
    out = rollout.sample(model, prompts, max_new, temperature=1.0, top_p=1.0, eos_token_id=eos,
                         seed=seed, n=n, pad_token_id=pad, graphs=graphs)
    return [len(c) for c in out.completion_ids]


def run_graphs(*args):
    return run_ours(*args, graphs=True)


def run_hf(model, prompts, n, max_new, eos, pad, seed):
    device = next(model.parameters()).device
    P = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (P - len(p)) + p for p in prompts], device=device)   # left padding
    mask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in prompts], device=device)
    torch.manual_seed(seed)
    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0,
                         top_p=1.0, top_k=0, max_new_tokens=max_new, num_return_sequences=n,
                         eos_token_id=eos, pad_token_id=pad)
    return completion_lengths(out[:, P:], eos)


RUNNERS = {"sample": run_ours, "sample+graphs": run_graphs, "generate": run_hf}


def timed(fn, *args):
    sync = torch.cuda.synchronize if next(args[0].parameters()).is_cuda else (lambda: None)
    sync()
    t0 = time.perf_counter()
    lengths = fn(*args)
    sync()
    return lengths, time.perf_counter() - t0


def compare(label, model, prompts, n, max_new, eos, pad, rounds, seed=0, names=("sample", "generate")):
    """Run the named samplers in turn, `rounds` times (order reversed every other round); print
    per-round figures and each one's median ratio to `generate`. Returns {name: [seconds per round]}
    and {name: median ratio}."""
    for name in names:  # warm-up: first-call allocations, kernel selection
        RUNNERS[name](model, prompts[:1], 2, 4, eos, pad, seed)
    print(f"\n== {label}: {len(prompts)} prompts x {n} samples, up to {max_new} new tokens")
    secs, lens, ratios = {k: [] for k in names}, {k: [] for k in names}, {k: [] for k in names}
    for r in range(rounds):
        tps = {}
        for name in (names if r % 2 == 0 else names[::-1]):
            lengths, s = timed(RUNNERS[name], model, prompts, n, max_new, eos, pad, seed + r)
            secs[name].append(s)
            lens[name] += lengths
            tps[name] = sum(lengths) / s
        for name in names:
            ratios[name].append(tps[name] / tps["generate"])
        print(f"round {r}: " + "  ".join(f"{name} {tps[name]:8.1f} tok/s ({secs[name][-1]:6.2f} s)" for name in names)
              + "  ratio " + ", ".join(f"{ratios[name][-1]:.2f}x" for name in names if name != "generate"))
    for name in names:
        total = sum(lens[name])
        print(f"{name}: {total / sum(secs[name]):.1f} tok/s overall, mean completion "
              f"{total / len(lens[name]):.1f} tokens, {sum(x == max_new for x in lens[name])} of "
              f"{len(lens[name])} rows hit the limit")
    medians = {name: statistics.median(ratios[name]) for name in names}
    for name in names:
        if name != "generate":
            print(f"median ratio {name}/generate: {medians[name]:.2f}x over {rounds} rounds")
    return secs, medians


def bench_cpu(args):
    from data import load_problems

    model, tok = rollout.load_model("smollm2-135m", device=args.device)
    problems = load_problems(args.dataset, limit=8, seed=args.seed)
    prompts = rollout.encode_problems(tok, problems, "chat")
    print(f"model smollm2-135m ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M params, "
          f"{next(model.parameters()).dtype}) on {args.device}, {torch.get_num_threads()} threads, "
          f"prompts {args.dataset} ({min(map(len, prompts))}-{max(map(len, prompts))} tokens), "
          f"eos {tok.stop_token_ids}, pad {tok.pad_token_id}")
    compare("smollm2-135m", model, prompts, 8, args.max_new_tokens, tok.stop_token_ids,
            tok.pad_token_id, args.rounds, args.seed, names=tuple(args.samplers.split(",")))


def qwen25_05b_config():
    from transformers import AutoConfig
    return AutoConfig.from_pretrained(Path(__file__).resolve().parent.parent / "configs" / "qwen2.5-0.5b")


def bench_random_model(config, device, sequences, max_new, rounds, peak_gbps, prompt_len=128, seed=0,
                       names=("sample", "sample+graphs", "generate")):
    """Random-weight model in bf16; fixed-length completions; ratios to generate and the fraction of the
    memory-bandwidth floor. Returns one result row per batch size and sampler."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    eos, pad = [config.vocab_size], 0  # an id past the vocabulary: never sampled, so no row stops early
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())  # tied weights once
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_bytes_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * head_dim * 2  # k+v, bf16
    results = []
    for B in sequences:
        g = torch.Generator().manual_seed(seed)
        prompts = torch.randint(0, config.vocab_size, (B // 8, prompt_len), generator=g).tolist()
        secs, medians = compare(f"random {config.model_type}, bf16, {B} sequences", model, prompts, 8, max_new,
                                eos, pad, rounds, seed, names)
        # Decode step s (s = 1 .. max_new-1) reads every weight once and the keys/values of
        # prompt_len + s positions for each of the B rows; the prefill is left out of the floor.
        floor_bytes = sum(weight_bytes + B * kv_bytes_per_token * (prompt_len + s) for s in range(1, max_new))
        floor_s = floor_bytes / (peak_gbps * 1e9)
        for name in names:
            seconds = statistics.median(secs[name])
            results.append({"sequences": B, "sampler": name, "tokens_per_s": B * max_new / seconds,
                            "ratio_to_generate": medians[name], "floor_fraction": floor_s / seconds})
            print(f"{name}: {floor_s / seconds:.1%} of the bandwidth floor "
                  f"({floor_bytes / 1e9:.1f} GB in {floor_s * 1e3:.1f} ms at {peak_gbps:.0f} GB/s)")
    del model
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (>= 3 for a median)")
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="device of the SmolLM2 comparison")
    parser.add_argument("--dataset", default="synthetic:2", help="prompts for the SmolLM2 comparison")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--peak_gbps", type=float, default=3350.0,
                        help="GPU peak memory bandwidth in GB/s (H100 SXM 3350, H200 4800)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(),
                        help="torch CPU threads (default: all cores; fewer if other work shares the CPU)")
    parser.add_argument("--skip_cpu", action="store_true", help="run only the CUDA section")
    parser.add_argument("--json", default=None, help="write the CUDA section's results to this file")
    parser.add_argument("--samplers", default="sample,generate",
                        help="samplers of the CPU section, from " + ", ".join(RUNNERS) + " (generate is the baseline)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if not args.skip_cpu:
        bench_cpu(args)
    if torch.cuda.is_available():
        print(f"\nGPU: {torch.cuda.get_device_name()}, floor computed at --peak_gbps {args.peak_gbps:.0f}")
        results = bench_random_model(qwen25_05b_config(), "cuda", (64, 256), args.max_new_tokens, args.rounds,
                                     args.peak_gbps)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    else:
        print("\nno CUDA GPU: random Qwen2.5-0.5B-config section not run")


if __name__ == "__main__":
    main()

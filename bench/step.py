"""Benchmark: seconds per GRPO step of train_grpo.py, by phase, against TRL's GRPOTrainer, the
update with and without prompt sharing, and the peak memory of speed.completion_logprobs
against a plain full log-softmax.

An RL step is sample -> reward -> old log-probs -> update, and the loop exists to be a small, fast
alternative to a general trainer, so this measures four things in one command on one machine:

  1. Phases. `train_grpo.train` runs --steps + 1 steps per round into a temporary folder; its
     metrics.jsonl records sample_seconds, reward_seconds, old_logp_seconds, update_seconds and
     step_seconds for every step. The first step of each run is warm-up and dropped; the table shows
     medians over all kept steps of all rounds.
  2. Head-to-head. TRL's `GRPOTrainer` (benchmark-only dependency, see requirements-bench.txt) with
     the same model, the same prompts in the same order, group size, completion length,
     temperature 1, learning rate, one PPO epoch, no KL (beta = 0), clip 0.2 / 0.28, DAPO token-mean
     loss, group-std scaling, AdamW(0.9, 0.99), grad clip 1, constant lr, no gradient
     checkpointing, float32 on the CPU, and the same reward function (reward.math_reward on the
     decoded completion). Rounds alternate ours / TRL (order flipped every round) so background load
     hits both alike; each round's figure is the median seconds per step (first step dropped) and
     the headline is the median over rounds of TRL / ours. A TRL step is timed from the trainer's
     on_step_begin to on_step_end callback (generation, reward, loss, backward, optimizer step);
     ours is grpo_step's step_seconds (the same work). What cannot be matched exactly is printed.
  3. Prompt sharing (--only share). Forward + backward of speed.completion_logprobs on one
     step's rollouts (the step's real prompts x G, random completions of 1..max_new_tokens tokens),
     with the G rollouts of a prompt sharing its forward pass and without, alternating, median of
     --rounds: what the sharing saves in the update.
  4. Memory. At Qwen2.5's vocabulary (151,936) on a small random Qwen2 (hidden 64, 2 layers, tied
     embeddings), the peak memory of a forward + backward through
       (a) speed.completion_logprobs (chunked vocabulary projection, recomputed in backward), and
       (b) the plain way: model(ids).logits.float().log_softmax(-1), gather the targets,
     for a batch of --mem_batch x --mem_seq tokens. (a) is measured twice: with its entropy output
     alive during backward (as train_grpo.rollouts_loss holds it with --entropy_coef > 0) and with
     only the log-probs kept. On CUDA:
     torch.cuda.max_memory_allocated above the allocation before the call. On the CPU: each variant
     runs in a fresh subprocess with MALLOC_MMAP_THRESHOLD_=65536 (every block >= 64 KiB is its own
     mapping, unmapped on free) and reports its resident-set peak (getrusage ru_maxrss) minus its
     resident set just before the call, so the figure follows the live tensors. tracemalloc would
     not see torch's allocations; with glibc's default dynamic threshold, freed chunk-sized blocks
     under 32 MB stay resident and inflate the chunked figures.

    .venv/bin/python bench/step.py                          # all four, SmolLM2-135M, ~20-30 min on 2 busy cores
    .venv/bin/python bench/step.py --model tiny --rounds 3  # random Qwen2 (hidden 256, 4 layers), quick
    .venv/bin/python bench/step.py --only memory --mem_chunks 512,128
"""
import argparse
import contextlib
import gc
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import rollout  # noqa: E402
import speed  # noqa: E402
import train_grpo  # noqa: E402
from reward import math_reward  # noqa: E402

PHASES = ("sample_seconds", "reward_seconds", "old_logp_seconds", "update_seconds", "step_seconds")
INSTRUCTION = "Give the result as a sentence of the form 'The answer is N.'"  # the cpu_demo prompt


# ----------------------------------------------------------------------------- models

def tiny_model_dir(folder: Path) -> str:
    """A random Qwen2 (hidden 256, 4 layers, untied head) with the tests' tokenizer, saved to folder."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import build_tokenizer
    from transformers import AutoModelForCausalLM, Qwen2Config

    tok = build_tokenizer()
    config = Qwen2Config(vocab_size=len(tok), hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)  # as in conftest: varied lengths instead of near-uniform choices
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


# ----------------------------------------------------------------------------- the two trainers

def our_argv(args, model, out_dir, seed):
    return ["--model", model, "--dataset", "synthetic:1", "--num_problems", str(args.num_problems),
            "--prompt_style", "chat", "--instruction", INSTRUCTION,
            "--batch_size", str(args.batch_size), "--group_size", str(args.group_size),
            "--max_new_tokens", str(args.max_new_tokens), "--temperature", "1.0", "--top_p", "1.0",
            "--lr", str(args.lr), "--warmup_steps", "0", "--lr_schedule", "constant", "--weight_decay", "0",
            "--grad_clip", "1.0", "--ppo_epochs", "1", "--mini_batches", "1", "--kl_coef", "0",
            "--eps_low", "0.2", "--eps_high", "0.28", "--loss_agg", "token_mean", "--scale_by_std", "true",
            "--micro_batch_tokens", str(args.micro_batch_tokens), "--max_steps", str(args.steps + 1),
            "--eval_every", "0", "--save_every", "0", "--log_rollouts", "0", "--plot", "false",
            "--device", "cpu", "--seed", str(seed), "--out_dir", str(out_dir)]


def run_ours(args, model, seed, tmp):
    """train_grpo.train for steps + 1 steps; returns the per-step metrics (warm-up step dropped)."""
    out_dir = Path(tmp) / f"ours-{seed}-{time.monotonic_ns()}"
    cfg = train_grpo.parse_config(our_argv(args, model, out_dir, seed))
    with contextlib.redirect_stdout(io.StringIO()):  # the config line
        train_grpo.train(cfg)
    rows = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    return rows[1:]


def step_prompts(args, model, seed):
    """The problems of each step exactly as train_grpo.train picks them, as (prompt text, answer)."""
    cfg = train_grpo.parse_config(our_argv(args, model, "/nonexistent", seed))
    train_set, _ = train_grpo.load_data(cfg)
    _, tok = rollout.load_model(model, device="cpu")
    rows = []
    for step in range(args.steps + 1):
        for i in train_grpo.batch_at(step, cfg, len(train_set)):
            p = train_set[i]
            rows.append({"prompt": rollout.format_prompt(tok, p["problem"], "chat", INSTRUCTION), "answer": p["answer"]})
    return rows


def trl_reward(prompts, completions, answer, **kwargs):
    return [math_reward(c, a) for c, a in zip(completions, answer)]


def run_trl(args, model_name, rows, seed, tmp):
    """GRPOTrainer for steps + 1 steps on the same prompts; per-step seconds (warm-up dropped),
    with the seconds spent generating and rewarding inside each step, and completion lengths."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    model, tok = rollout.load_model(model_name, device="cpu", dtype=torch.float32)
    # TRL stops a completion at the ids in model.generation_config.eos_token_id (plus the tokenizer's
    # eos); give it the same stop list our sampler uses.
    model.generation_config.eos_token_id = list(tok.stop_token_ids)
    n = args.batch_size * args.group_size
    config = GRPOConfig(
        output_dir=str(Path(tmp) / f"trl-{seed}"), use_cpu=True, bf16=False, fp16=False, seed=seed,
        per_device_train_batch_size=n, gradient_accumulation_steps=1, num_generations=args.group_size,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.99, max_grad_norm=1.0, num_iterations=1, beta=0.0,
        epsilon=0.2, epsilon_high=0.28, loss_type="dapo", scale_rewards="group",
        mask_truncated_completions=False, gradient_checkpointing=False, use_vllm=False,
        shuffle_dataset=False, max_steps=args.steps + 1, logging_steps=10 ** 6, save_strategy="no",
        report_to="none", disable_tqdm=True, log_completions=False, dataloader_num_workers=0)
    trainer = GRPOTrainer(model=model, reward_funcs=trl_reward, args=config, processing_class=tok,
                          train_dataset=Dataset.from_list(rows))
    probe = trainer.processing_class(text=[rows[0]["prompt"]])["input_ids"][0]
    same_prompt_ids = list(probe) == rollout.encode_prompts(tok, [rows[0]["prompt"]])[0]

    inner = {"generate": [], "reward": []}
    lengths = []

    def timed(name, fn):
        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            inner[name][-1] += time.perf_counter() - t0
            if name == "generate":
                lengths.append([len(c) for c in out[0]])
            return out
        return wrapper

    trainer._generate_single_turn = timed("generate", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("reward", trainer._calculate_rewards)
    steps = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **kw):
            inner["generate"].append(0.0)
            inner["reward"].append(0.0)
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **kw):
            steps.append(time.perf_counter() - self.t0)

    trainer.add_callback(StepTimer())
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    del trainer, model
    gc.collect()
    return dict(step=steps[1:], generate=inner["generate"][1:], reward=inner["reward"][1:],
                lengths=[x for row in lengths[1:] for x in row], same_prompt_ids=same_prompt_ids)


def head_to_head(args):
    with tempfile.TemporaryDirectory() as tmp:
        model = tiny_model_dir(Path(tmp) / "tiny") if args.model == "tiny" else args.model
        torch.set_num_threads(args.threads)  # importing tests/conftest.py sets its own thread count
        rows = step_prompts(args, model, args.seed)
        _, tok = rollout.load_model(model, device="cpu")
        prompt_lens = [len(p) for p in rollout.encode_prompts(tok, [r["prompt"] for r in rows])]
        print_settings(args, model, tok, prompt_lens)
        ours_rows, trl_runs, ratios = [], [], []
        for r in range(args.rounds):
            order = ["ours", "trl"] if r % 2 == 0 else ["trl", "ours"]
            got = {}
            for side in order:
                t0 = time.perf_counter()
                if side == "ours":
                    got[side] = run_ours(args, model, args.seed, tmp)
                else:
                    got[side] = run_trl(args, model, rows, args.seed, tmp)
                print(f"  round {r}: {side} run took {time.perf_counter() - t0:.0f} s", flush=True)
            ours_s = statistics.median(m["step_seconds"] for m in got["ours"])
            trl_s = statistics.median(got["trl"]["step"])
            ratios.append(trl_s / ours_s)
            ours_rows += got["ours"]
            trl_runs.append(got["trl"])
            print(f"round {r} ({' then '.join(order)}): ours {ours_s:7.2f} s/step  TRL {trl_s:7.2f} s/step  "
                  f"TRL/ours {ratios[-1]:.2f}x", flush=True)
        report(args, ours_rows, trl_runs, ratios)


def print_settings(args, model, tok, prompt_lens):
    n_params = None
    m, _ = rollout.load_model(model, device="cpu")
    n_params = sum(p.numel() for p in m.parameters())
    del m
    rows = [
        ("model", f"{args.model} ({n_params / 1e6:.1f}M params, float32, CPU, {torch.get_num_threads()} threads)",
         "same object type, loaded by rollout.load_model"),
        ("prompts", f"synthetic:1, chat template + '{INSTRUCTION[:28]}...', {min(prompt_lens)}-{max(prompt_lens)} tokens",
         "same texts, same order (TRL: shuffle_dataset=False)"),
        ("prompts per step x G", f"{args.batch_size} x {args.group_size}", "per_device_train_batch_size="
         f"{args.batch_size * args.group_size}, num_generations={args.group_size}, grad accumulation 1"),
        ("max new tokens", str(args.max_new_tokens), "max_completion_length"),
        ("sampling", "temperature 1.0, top_p 1.0, no top-k", "temperature=1.0, top_p=1.0, top_k=0"),
        ("stop ids / pad", f"{tok.stop_token_ids} / {tok.pad_token_id}", "generation_config.eos_token_id set to the same"),
        ("reward", "reward.math_reward(decoded completion, answer)", "same function as a TRL reward_func"),
        ("advantage", "(r - group mean) / group std", "scale_rewards='group'"),
        ("loss", "clip 0.2 / 0.28, token mean over the batch, no KL", "epsilon=0.2, epsilon_high=0.28, loss_type='dapo', beta=0"),
        ("optimizer", f"AdamW lr {args.lr:g} constant, betas (0.9, 0.99), wd 0, clip 1.0",
         "same (lr_scheduler_type='constant')"),
        ("updates per step", "1 PPO epoch, 1 mini-batch", "num_iterations=1, steps_per_generation=1"),
        ("memory savers", f"micro_batch_tokens {args.micro_batch_tokens} (one micro-batch), no grad checkpointing",
         "gradient_checkpointing=False, bf16=False"),
    ]
    print(f"\n== head-to-head: train_grpo.train vs trl.GRPOTrainer {_trl_version()}")
    print(f"{'setting':22s} {'train_grpo (ours)':62s} TRL")
    for name, ours, trl in rows:
        print(f"{name:22s} {ours:62s} {trl}")
    print("not matched exactly:\n"
          "  - sampler: ours is rollout.sample (KV cache, finished rows dropped); TRL calls model.generate.\n"
          "    Random draws differ, so completion lengths differ run to run (mean lengths printed below).\n"
          "  - old log-probs: TRL skips the no-grad pass when generation and optimizer steps line up (as here) and\n"
          "    uses the detached current log-probs; whether ours runs one is visible in its 'old log-probs' row.\n"
          "  - log-prob head: ours chunks the vocabulary projection (512 tokens, recomputed in backward);\n"
          "    TRL 1.x patches a fused chunked LM head into the model; ours takes entropies from the sampler.\n"
          "  - timing: ours = grpo_step's step_seconds; TRL = on_step_begin..on_step_end (same work; neither\n"
          "    includes checkpoint saving or logging between steps).\n")


def _trl_version():
    try:
        import trl
        return trl.__version__
    except ImportError:
        return "(not installed)"


def report(args, ours_rows, trl_runs, ratios):
    med = {k: statistics.median(m[k] for m in ours_rows) for k in PHASES}
    trl_step = statistics.median(x for run in trl_runs for x in run["step"])
    trl_gen = statistics.median(x for run in trl_runs for x in run["generate"])
    trl_rew = statistics.median(x for run in trl_runs for x in run["reward"])
    ours_len = statistics.mean(m["response_len_mean"] for m in ours_rows)
    trl_len = statistics.mean(x for run in trl_runs for x in run["lengths"])
    print(f"\n== seconds per step, medians over {len(ours_rows)} steps (ours) and "
          f"{sum(len(r['step']) for r in trl_runs)} steps (TRL), {args.rounds} rounds, first step of each run dropped")
    print(f"{'phase':26s} {'train_grpo':>11s} {'share':>7s} {'TRL':>11s}")
    trl_cols = {"sample_seconds": trl_gen, "reward_seconds": trl_rew, "old_logp_seconds": None,
                "update_seconds": trl_step - trl_gen - trl_rew, "step_seconds": trl_step}
    names = {"sample_seconds": "sample", "reward_seconds": "reward", "old_logp_seconds": "old log-probs",
             "update_seconds": "update (fwd+bwd+AdamW)", "step_seconds": "whole step"}
    for k in PHASES:
        t = trl_cols[k]
        t_txt = "skipped" if t is None else f"{t:11.3f}"
        print(f"{names[k]:26s} {med[k]:11.3f} {med[k] / med['step_seconds']:7.1%} {t_txt:>11s}")
    print("(TRL's 'update' = its step minus generation and reward: prompt tokenisation, advantages, loss, "
          "backward, optimizer)")
    print(f"mean completion length: ours {ours_len:.1f} tokens, TRL {trl_len:.1f} tokens (limit {args.max_new_tokens})")
    print(f"TRL tokenises the prompt texts to the same ids as ours: {all(r['same_prompt_ids'] for r in trl_runs)}")
    print(f"per-round TRL/ours: {', '.join(f'{x:.2f}' for x in ratios)}")
    print(f"median TRL/ours seconds per step: {statistics.median(ratios):.2f}x  (target >= 2x)")


# ----------------------------------------------------------------------------- memory

def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_worker(variant: str, batch: int, seq: int, prompt_len: int, device: str) -> dict:
    """One variant in this process: peak bytes above the state before the call, and seconds."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2 * seq,
                         tie_word_embeddings=True)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device).train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, config.vocab_size, (batch, seq), generator=g)
    prompts = ids[:, :prompt_len].tolist()
    completions = ids[:, prompt_len:].tolist()
    ids = ids.to(device)
    targets = ids[:, prompt_len:]
    gc.collect()
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = current_rss()
    t0 = time.perf_counter()
    entropy = None
    if variant == "full":
        logp = model(input_ids=ids).logits.float().log_softmax(-1)[:, prompt_len - 1:-1] \
            .gather(-1, targets[..., None]).squeeze(-1)                               # [b, Tc]
    else:  # "chunk:N": log-probs only, as the update pass runs by default; ":entropy" adds the
        chunk = int(variant.split(":")[1])  # entropy term to the loss, as --entropy_coef does
        with_entropy = variant.endswith(":entropy")
        logp, entropy = speed.completion_logprobs(model, prompts, completions, pad_id=0, chunk=chunk,
                                                       with_entropy=with_entropy)
    (logp.sum() + (entropy.sum() if entropy is not None else 0)).backward()
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base   # ru_maxrss is in KiB
    return {"variant": variant, "peak_bytes": peak, "base_bytes": base, "seconds": time.perf_counter() - t0,
            "logp_sum": logp.sum().item()}


def memory(args):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    V, b, s, P = 151936, args.mem_batch, args.mem_seq, args.mem_prompt
    full_gb = b * s * V * 4 / 1e9
    print(f"\n== log-prob peak memory, vocabulary {V}, random Qwen2 (hidden 64, 2 layers, tied), batch {b} x {s} "
          f"tokens ({P} prompt + {s - P} completion), forward + backward of sum(log p), {device}")
    print(f"(one [{b}, {s}, {V}] float32 tensor is {full_gb:.2f} GB; "
          f"measure: {'torch.cuda.max_memory_allocated' if device != 'cpu' else 'ru_maxrss - RSS before, fresh process per variant'})")
    variants = ["full"] + [f"chunk:{c}{k}" for c in args.mem_chunks.split(",") for k in ("", ":entropy")]
    results = {}
    # A fixed glibc mmap threshold: every allocation >= 64 KiB is its own mapping, returned to the
    # system when freed, so the resident-set peak follows the live tensors (with glibc's default
    # dynamic threshold, freed chunk-sized blocks below 32 MB stay resident in the heap).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for v in variants:
        cmd = [sys.executable, __file__, "--_mem_worker", v, "--mem_batch", str(b), "--mem_seq", str(s),
               "--mem_prompt", str(P), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{v}: failed\n{out.stderr[-2000:]}")
            continue
        results[v] = json.loads(out.stdout.strip().splitlines()[-1])
    full = results.get("full")
    print(f"{'variant':62s} {'peak GB':>9s} {'vs full':>8s} {'seconds':>8s}")
    for v, r in results.items():
        if v == "full":
            label = "plain: model(ids).logits.float().log_softmax(-1), gather"
        else:
            label = f"completion_logprobs chunk={v.split(':')[1]} tokens" + \
                (", with the entropy term (--entropy_coef)" if v.endswith(":entropy") else ", log-probs only (default)")
        rel = f"{r['peak_bytes'] / full['peak_bytes']:8.3f}" if full else "-"
        print(f"{label:62s} {r['peak_bytes'] / 1e9:9.2f} {rel} {r['seconds']:8.2f}")
    if full:
        for v, r in results.items():
            if v != "full" and abs(r["logp_sum"] - full["logp_sum"]) > 1e-3 * abs(full["logp_sum"]):
                print(f"warning: {v} sum of log-probs {r['logp_sum']:.3f} differs from full {full['logp_sum']:.3f}")
        default = f"chunk:{train_grpo.Config.logprob_chunk}"
        if default in results:
            ratio = results[default]["peak_bytes"] / full["peak_bytes"]
            print(f"default chunk ({train_grpo.Config.logprob_chunk} tokens), as grpo_step calls it: {ratio:.3f} "
                  f"of the plain log-softmax peak (target <= 0.25)")


# ----------------------------------------------------------------------------- prompt sharing

def prompt_sharing(args):
    """Forward + backward of completion_logprobs on one step's rollouts, with the G rollouts of a
    prompt sharing its forward pass (the default) and without (every row runs its own prompt)."""
    with tempfile.TemporaryDirectory() as tmp:
        name = tiny_model_dir(Path(tmp) / "tiny") if args.model == "tiny" else args.model
        torch.set_num_threads(args.threads)
        model, tok = rollout.load_model(name, device="cpu", dtype=torch.float32)
        rows = step_prompts(args, name, args.seed)[:args.batch_size]
    model.train()
    prompts = rollout.encode_prompts(tok, [r["prompt"] for r in rows])
    gen = torch.Generator().manual_seed(args.seed)
    # Completions of random tokens with lengths spread over 1..max_new_tokens, as rows stop at EOS.
    completions = [torch.randint(0, len(tok), (int(torch.randint(1, args.max_new_tokens + 1, (), generator=gen)),),
                                 generator=gen).tolist() for _ in range(len(prompts) * args.group_size)]
    seq_prompts = [p for p in prompts for _ in range(args.group_size)]
    n_tokens = sum(len(p) + len(c) for p, c in zip(seq_prompts, completions))
    print(f"\n{len(prompts)} prompts ({statistics.mean(map(len, prompts)):.0f} tokens on average) x G = "
          f"{args.group_size}, completions of 1..{args.max_new_tokens} tokens: {n_tokens} tokens unshared")

    def fwd_bwd(share: bool) -> float:
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        logp, _ = speed.completion_logprobs(model, seq_prompts, completions, tok.pad_token_id,
                                                 with_entropy=False, share_prompts=share)
        logp.sum().backward()
        return time.perf_counter() - t0

    fwd_bwd(True), fwd_bwd(False)   # warm-up
    times = {True: [], False: []}
    for r in range(args.rounds):
        for share in ([True, False] if r % 2 == 0 else [False, True]):
            times[share].append(fwd_bwd(share))
        print(f"  round {r}: shared {times[True][-1]:.2f} s, unshared {times[False][-1]:.2f} s", flush=True)
    shared, unshared = statistics.median(times[True]), statistics.median(times[False])
    print(f"forward + backward, median of {args.rounds}: shared {shared:.2f} s, unshared {unshared:.2f} s: "
          f"{unshared / shared:.2f}x faster with prompt sharing")


# ----------------------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--only", choices=["all", "step", "share", "memory"], default="all",
                        help="step = phases + TRL head-to-head; share = update with / without prompt sharing; "
                             "memory = log-prob peak memory")
    parser.add_argument("--model", default="smollm2-135m",
                        help="smollm2-135m (offline), a model folder, or 'tiny' (random Qwen2, hidden 256, 4 layers)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of ours / TRL")
    parser.add_argument("--steps", type=int, default=2, help="timed steps per run (one warm-up step is added)")
    parser.add_argument("--batch_size", type=int, default=4, help="prompts per step")
    parser.add_argument("--group_size", type=int, default=8, help="rollouts per prompt (G)")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--micro_batch_tokens", type=int, default=65536, help="ours: token budget of a micro-batch")
    parser.add_argument("--num_problems", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--mem_batch", type=int, default=8)
    parser.add_argument("--mem_seq", type=int, default=512, help="tokens per row, prompt included")
    parser.add_argument("--mem_prompt", type=int, default=16, help="prompt tokens per row")
    parser.add_argument("--mem_chunks", default="512", help="completion_logprobs chunk sizes (tokens) to measure")
    parser.add_argument("--_mem_worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args._mem_worker:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(json.dumps(memory_worker(args._mem_worker, args.mem_batch, args.mem_seq, args.mem_prompt, device)))
        return
    import platform
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    print(f"machine: {os.cpu_count()} CPUs ({cpu}), torch {torch.__version__}, {args.threads} threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    if args.only in ("all", "step"):
        head_to_head(args)
    if args.only in ("all", "share"):
        prompt_sharing(args)
    if args.only in ("all", "memory"):
        memory(args)
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()

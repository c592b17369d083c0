"""The paper's runs as presets: `python train_hicra.py --preset paper_qwen3_4b_instruct` (and train_grpo.py, the
same preset for the GRPO baseline). Every value says where it comes from (shown by `--preset NAME --help` beside
each flag, and in the README's table "The paper and this project"):

  stated    the paper says so (../shared/PAPER.md, "The paper's setting, as stated")
  inferred  the paper implies it (its plots, its baseline's name)
  chosen    the paper is silent: chosen here, after the source named (DAPO's recipe: verl's recipe/dapo scripts
            for DAPO-Math-17k, the setup the paper builds on)
  arithmetic  sized for the hardware by bench/hardware.py (the paper's GPUs: A100 80GB; it does not say how it
            sharded or batched)

Hardware (`python bench/hardware.py` prints the arithmetic per GPU, README "The paper's runs"): every preset
shards the model with FSDP over the GPUs of one node (8 x 80 GB, the paper's A100s) and checkpoints activations;
`sample_rows` bounds the sampler's KV cache at the final response length and `micro_batch_tokens` holds one
response of that length with its prompt.

    torchrun --nproc_per_node 8 train_hicra.py --preset paper_qwen3_4b_instruct
    torchrun --nproc_per_node 8 train_grpo.py  --preset paper_qwen3_4b_instruct --out_dir runs/grpo
"""

DAPO = "chosen: DAPO's recipe"

# (value, source) for every paper run.
COMMON = {
    "dataset": ("dapo_math_17k:train", "stated: DAPO-Math-17k and DeepScaleR, which with which model is not; "
                "DAPO-Math-17k chosen for all (deepscaler:train is the other; data/prepare.py fetches both)"),
    "strict_box": (True, "stated: the reward is the correctness of the final \\boxed{} answer"),
    "instruction": ("Please reason step by step, and put your final answer within \\boxed{}.",
                    "chosen: the R1 / Qwen2.5-Math prompt"),
    "group_size": (8, "inferred: the paper's plots report Pass@8"),
    "max_new_tokens": (16384, "stated: 16K-token responses"),
    "max_new_tokens_final": (32768, "stated: raised to 32K"),
    "grow_when_truncated": (0.2, "stated: once more than 20% of responses are clipped"),
    "grow_window": (5, "chosen here: the paper does not say over how many steps the clip rate is taken"),
    "temperature": (1.0, DAPO),
    "top_p": (1.0, DAPO),
    "scale_by_std": (True, "chosen: standard GRPO (the paper writes A = R - mean only)"),
    "eps_low": (0.2, "inferred: \"GRPO with clip-higher\"; DAPO's 0.2"),
    "eps_high": (0.28, "inferred: \"GRPO with clip-higher\"; DAPO's 0.28"),
    "loss_agg": ("token_mean", DAPO + " (token-level loss)"),
    "kl_coef": (0.0, DAPO + " (no KL term)"),
    "entropy_coef": (0.0, "stated: entropy regularisation is a baseline of its own, not part of GRPO"),
    "batch_size": (128, "chosen: the paper gives none (DAPO's recipe: 512 prompts x 16)"),
    "mini_batches": (4, "chosen: 32 prompts a mini-batch as in DAPO's recipe, so the ratio moves and clip-higher acts"),
    "ppo_epochs": (1, DAPO),
    "lr": (1e-6, DAPO),
    "warmup_steps": (10, DAPO),
    "weight_decay": (0.1, DAPO),
    "grad_clip": (1.0, DAPO),
    "lr_schedule": ("constant", DAPO),
    "max_steps": (500, "inferred: the paper's figures run 90 to 500 steps"),
    "eval_dataset": ("aime24", "chosen: a held-out curve during training (greedy, at the current response length); "
                     "the paper's numbers come from eval.py --protocol paper on the final checkpoint"),
    "eval_size": (30, "chosen: all of AIME24"),
    "eval_every": (25, "chosen"),
    "save_every": (25, "chosen"),
    "log_rollouts": (16, "chosen"),
    "fsdp": (True, "arithmetic (bench/hardware.py): AdamW's float32 state does not fit one GPU"),
    "grad_checkpointing": (True, "arithmetic (bench/hardware.py): activations of a 34K-token sequence"),
    "micro_batch_tokens": (36864, "arithmetic: one 32K response with its prompt"),
    "dist_timeout": (120.0, "arithmetic: rank 0 evaluates 30 AIME problems at up to 32K tokens, 8 at a time, while "
                     "the other ranks wait: about an hour at 25 ms a decode step (an estimate, not measured)"),
}

# What differs between the paper's runs.
CHAT = ("chat", "inferred: an instruct model, its chat template")
PLAIN = ("plain", "inferred: RL from a base model (zero-RL), no chat template")
RUNS = {
    "paper_qwen3_4b_instruct": {
        "model": ("Qwen/Qwen3-4B-Instruct-2507", "stated"),
        "prompt_style": CHAT,
        "sample_rows": (8, "arithmetic (bench/hardware.py): 8 x 34K tokens of KV cache"),
    },
    "paper_qwen3_4b_base": {
        "model": ("Qwen/Qwen3-4B-Base", "stated"),
        "prompt_style": PLAIN,
        "max_new_tokens_final": (30720, "chosen: the paper's 32K does not fit the model's 32,768-token context with "
                                 "a prompt; 30,720 leaves DAPO's 2,048 prompt tokens"),
        "sample_rows": (8, "arithmetic (bench/hardware.py): 8 x 32K tokens of KV cache"),
    },
    "paper_qwen2.5_7b_base": {
        "model": ("Qwen/Qwen2.5-7B", "stated"),
        "prompt_style": PLAIN,
        "sample_rows": (16, "arithmetic (bench/hardware.py): 16 x 34K tokens of KV cache (4 KV heads)"),
    },
    "paper_llama3.1_8b_instruct": {
        "model": ("meta-llama/Llama-3.1-8B-Instruct", "stated"),
        "prompt_style": CHAT,
        "dynamic_sampling": (True, "stated: DAPO's dynamic sampling for this model only (vanishing advantages)"),
        "dynamic_sampling_rounds": (10, "chosen: DAPO's recipe (max_num_gen_batches 10)"),
        "sample_rows": (8, "arithmetic (bench/hardware.py): 8 x 34K tokens of KV cache"),
    },
}

SOURCES = {name: COMMON | run for name, run in RUNS.items()}                       # preset -> flag -> (value, source)
PAPER = {name: {flag: value for flag, (value, _) in flags.items()} for name, flags in SOURCES.items()}

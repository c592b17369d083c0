"""Command-line flags for the trainers: every field of a Config dataclass becomes a flag, a preset sets
defaults, and a table of checks refuses nonsense in one line naming the flag before anything is loaded.

Plumbing: the algorithm (train_grpo.py) does not depend on reading this file. To add a knob, add a field
to train_grpo.Config (int, float, str, bool, or one of them | None) and, if some values make no sense,
a row to CHECKS below.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import typing

import checks
from checks import at_least, fraction, non_negative, number, one_of, positive


class ConfigError(ValueError):
    """A setting that cannot work; the message is one line naming the flag."""


def parse_config(argv, config_class, checks_table, presets: dict, description: str = "", sources: dict | None = None):
    """Every field of `config_class` is a flag (`--lr 1e-5`, `--scale_by_std false`, `--x none` for a field
    that may be None); `--preset NAME` sets the defaults of `presets[NAME]`, and flags given win over it.
    --help shows each flag's default (the preset's, with --preset) and, from the checks table, what it needs;
    sources[NAME][flag] = (value, where it comes from) adds the latter to the preset's flags."""
    argv = sys.argv[1:] if argv is None else list(argv)
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--preset", default="")
    name = early.parse_known_args(argv)[0].preset
    if name and name not in presets:
        early.error(f"--preset {name!r}: choose from {', '.join(presets)}")
    preset, origin = presets.get(name, {}), (sources or {}).get(name, {})
    parser = argparse.ArgumentParser(description=description + (f" Preset {name}: defaults below." if name else ""))
    needs = {flag: need for flag, _, need in checks_table}
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        help_text = (needs.get(f.name, "") + " (default: %(default)s)").strip()
        if f.name in origin:
            help_text += f" [{origin[f.name][1]}]".replace("%", "%%")
        kind, optional = _flag_type(hints[f.name], f.name)
        if kind is bool and not optional:
            parser.add_argument(f"--{f.name}", type=_bool, nargs="?", const=True, default=f.default, help=help_text)
        else:
            convert = _bool if kind is bool else kind
            parser.add_argument(f"--{f.name}", default=f.default, help=help_text,
                                type=(lambda text, convert=convert: None if text.lower() in ("none", "null") else
                                      convert(text)) if optional else convert)
    parser.set_defaults(**preset)   # the preset's values are the defaults: flags given win, --help shows them
    return config_class(**vars(parser.parse_args(argv)))


def _flag_type(hint, name: str) -> tuple[type, bool]:
    """(int | float | str | bool, whether None is allowed) for a Config field's annotation: int, float, str,
    bool, and each of them `| None` or Optional[...] (then --flag none gives None)."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] if args else [hint]
    if len(kinds) != 1 or kinds[0] not in (int, float, str, bool):
        raise TypeError(f"Config field {name}: {hint} is not a flag type (int, float, str, bool, or one of them | None)")
    return kinds[0], optional


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


# What each flag of train_grpo.Config needs (train_grpo.py adds --loss_agg's row, from its AGGREGATIONS).
# 0 means "off" where a flag's comment in Config says so.
CHECKS = [
    ("num_problems", at_least(0), "an integer >= 0 (0 = all)"),
    ("max_steps", at_least(1), "an integer >= 1"),
    ("batch_size", at_least(1), "at least one prompt per step"),
    ("group_size", at_least(2), ">= 2 rollouts per prompt: GRPO compares the rollouts of a prompt"),
    ("max_new_tokens", at_least(1), "an integer >= 1"),
    ("max_new_tokens_final", at_least(0), "an integer >= 0 (0 = never grow)"),
    ("grow_when_truncated", lambda x: number(x) and 0 <= x < 1, "a number in [0, 1)"),
    ("grow_window", at_least(1), "an integer >= 1"),
    ("dynamic_sampling_rounds", at_least(1), "an integer >= 1 (1 = no extra draws)"),
    ("temperature", positive, "a number > 0 (training samples)"),
    ("top_p", fraction, "a number in (0, 1]"),
    ("eps_low", lambda x: number(x) and 0 < x < 1, "a number in (0, 1)"),
    ("eps_high", positive, "a number > 0"),
    ("kl_coef", non_negative, "a number >= 0 (0 = no KL term)"),
    ("entropy_coef", non_negative, "a number >= 0 (0 = no entropy bonus)"),
    ("lr", fraction, "a number in (0, 1]"),
    ("weight_decay", non_negative, "a number >= 0"),
    ("warmup_steps", at_least(0), "an integer >= 0"),
    ("grad_clip", non_negative, "a number >= 0 (0 = no clipping)"),
    ("ppo_epochs", at_least(1), "an integer >= 1"),
    ("mini_batches", at_least(1), "an integer >= 1"),
    ("micro_batch_tokens", at_least(1), "an integer >= 1"),
    ("sample_rows", at_least(0), "an integer >= 0 (0 = a rank's rollouts in one sampler call)"),
    ("logprob_chunk", at_least(1), "an integer >= 1"),
    ("max_bad_steps", at_least(1), "an integer >= 1"),
    ("eval_every", at_least(0), "an integer >= 0 (0 = never)"),
    ("eval_size", at_least(1), "an integer >= 1 (to skip evaluation: --eval_every 0)"),
    ("eval_temperature", non_negative, "a number >= 0 (0 = greedy)"),
    ("save_every", at_least(-1), "an integer >= -1 (0 = only at the end, -1 = only on Ctrl-C)"),
    ("log_rollouts", at_least(0), "an integer >= 0"),
    ("log_failures", at_least(0), "an integer >= 0 (failed rollouts a step kept for analyze.py errors)"),
    ("top_entropy_quantile", fraction, "a number in (0, 1] (1 = every token)"),
    ("max_pixels", lambda x: x == 0 or at_least(784)(x), "0 (the model's own cap) or at least 784 (one 28 x 28 patch)"),
    ("grad_cosine_every", at_least(0), "an integer >= 0 (0 = never)"),
    ("dist_timeout", positive, "minutes > 0"),
    ("lr_schedule", one_of("constant", "cosine"), "constant or cosine"),
    ("prompt_style", one_of("", "chat", "plain"), "chat or plain"),
    ("sampler_dtype", one_of("auto", "float32", "bfloat16"), "auto, float32 or bfloat16"),
]


def check_config(cfg, table):
    """Nonsense settings fail here, in one line naming the flag, before any data or model is loaded."""
    rollouts, world = cfg.batch_size * cfg.group_size, int(os.environ.get("WORLD_SIZE", "1"))   # torchrun's ranks
    cross = [
        (cfg.mini_batches > rollouts, f"--mini_batches {cfg.mini_batches}: more than the {rollouts} rollouts of a step"),
        (0 < cfg.max_new_tokens_final <= cfg.max_new_tokens, f"--max_new_tokens_final {cfg.max_new_tokens_final}: "
         f"not above --max_new_tokens {cfg.max_new_tokens} (0 = never grow)"),
        (cfg.fsdp and world == 1, "--fsdp: shards over several ranks; launch with torchrun --nproc_per_node N (N >= 2)"),
        (cfg.batch_size % world != 0, f"--batch_size {cfg.batch_size}: does not split into whole groups over {world} ranks"),
    ]
    message = checks.problem(dataclasses.asdict(cfg), table) or next((text for bad, text in cross if bad), None)
    message = message or checks.device_problem(cfg.device)
    if message:
        raise ConfigError(message)


def check_split(cfg, num_train: int, num_held_out: int):
    """A step needs --batch_size training problems: say which flag to change when the data has too few, or
    when holding out --eval_size problems left too few."""
    if num_train < cfg.batch_size <= num_train + num_held_out and not cfg.eval_dataset:   # the held-out draw took them
        raise ConfigError(f"--eval_size {cfg.eval_size}: holds out {num_held_out} problems of --dataset {cfg.dataset}, "
                          f"leaving {num_train} to train on, fewer than --batch_size {cfg.batch_size}; lower "
                          f"--eval_size or give --eval_dataset")
    if cfg.batch_size > num_train:
        raise ConfigError(f"--batch_size {cfg.batch_size}: larger than the {num_train} training problems "
                          f"of --dataset {cfg.dataset}" + (" outside the held-out set" if num_held_out else ""))

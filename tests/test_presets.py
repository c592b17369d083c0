"""The paper's runs (presets.py): each preset parses, passes its checks, and runs two steps of HICRA end to end on
the CPU at its model's real architecture (configs/, scaled down to tiny widths, random weights) with tiny lengths;
--help and the README's table show the preset's values; the hardware arithmetic of bench/hardware.py by hand."""
import json
import re
import sys

import pytest

import presets
import train_grpo
import train_hicra
from conftest import ROOT, fake_reward, read_metrics

SHAPES = {"Qwen/Qwen3-4B-Instruct-2507": "qwen3-4b-instruct-2507", "Qwen/Qwen3-4B-Base": "qwen3-4b-base",
          "Qwen/Qwen2.5-7B": "qwen2.5-7b", "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b-instruct"}


def tiny_shape(model: str, folder):
    """The model's config.json from configs/ at tiny widths: the same architecture (model type, tied or untied
    embeddings, rotary scaling, the ratio of query to key/value heads), 2 layers, a 512-token vocabulary."""
    config = json.loads((ROOT / "configs" / SHAPES[model] / "config.json").read_text())
    ratio = config["num_attention_heads"] // config["num_key_value_heads"]
    config.update(num_hidden_layers=2, max_window_layers=2, num_attention_heads=2 * ratio, num_key_value_heads=2,
                  head_dim=16, hidden_size=32 * ratio, intermediate_size=64, vocab_size=512,
                  bos_token_id=None, eos_token_id=None)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def data_dir(tmp_path):
    """dapo_math_17k/train.jsonl (what data/prepare.py writes) and aime24/test.jsonl, a few rows each."""
    for name, split, numbers in (("dapo_math_17k", "train", range(24)), ("aime24", "test", range(100, 104))):
        rows = [{"id": f"{name}-{i}", "problem": f"What is {i} + {i + 1}?", "answer": str(2 * i + 1)} for i in numbers]
        (tmp_path / name).mkdir(parents=True)
        (tmp_path / name / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


@pytest.mark.parametrize("name", list(presets.PAPER))
def test_each_paper_preset_runs_two_steps_at_its_architecture(name, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)   # random weights never solve a problem
    values = presets.PAPER[name]
    shape = tiny_shape(values["model"], tmp_path / "shape")
    tiny = ["--model", f"random:{shape}", "--data_dir", str(data_dir(tmp_path / "data")), "--device", "cpu",
            "--fsdp", "false",   # one process here; FSDP under torchrun is tests/test_distributed.py's
            "--batch_size", "2", "--max_steps", "2", "--max_new_tokens", "6", "--max_new_tokens_final", "12",
            "--eval_size", "4", "--eval_every", "1", "--micro_batch_tokens", "4096", "--out_dir", str(tmp_path / "run"),
            "--plot", "false"]
    cfg = train_grpo.parse_config(["--preset", name, *tiny], train_hicra.HicraConfig, train_hicra.CHECKS)
    train_grpo.check_config(cfg, train_hicra.CHECKS)
    assert not train_grpo.on_policy(cfg), "the paper's clip-higher needs the ratio to move"
    train_hicra.main(["--preset", name, *tiny])
    rows = read_metrics(tmp_path / "run")
    steps = [r for r in rows if "reward_mean" in r]
    assert [r["step"] for r in steps] == [0, 1] and all("eval_accuracy" in r for r in rows)
    assert steps[0]["truncated_frac"] > 0.2 and [r["max_new_tokens"] for r in steps] == [6, 12]   # the context rule
    assert all(r["updates"] == 4 for r in steps)                      # four mini-batches a step
    assert ("ds_draws" in steps[0]) == values.get("dynamic_sampling", False)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    untouched = {k: v for k, v in values.items() if f"--{k}" not in tiny}
    assert {k: config[k] for k in untouched} == untouched             # every other value is the preset's
    assert config["group_size"] == 8 and config["eps_high"] == 0.28 and config["mask"] == "strategic"


def help_defaults(name: str, monkeypatch) -> dict:
    """Each flag's default as `train_hicra.py --preset NAME --help` prints it (its parser, in this process)."""
    import contextlib
    import io
    monkeypatch.setenv("COLUMNS", "1000")   # argparse wraps no value
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit):
        train_hicra.main(["--preset", name, "--help"])
    text, shown = out.getvalue(), {}
    for block in re.split(r"\n(?=  -)", text[text.index("options:"):]):   # an option and its help (maybe below it)
        option = re.match(r"\s*--(\w+) \S+\s+.*?\(default: (.*?)\)(?: \[.*)?$", " ".join(block.split()))
        if option:
            shown[option.group(1)] = option.group(2)
    return shown


def test_help_and_the_readme_table_show_every_preset_value(monkeypatch):
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### The paper's runs"):]
    table = table[:table.index("\n\n", table.index("| flag |"))]
    header = [c.strip() for c in table.splitlines()[table.splitlines().index(next(
        line for line in table.splitlines() if line.startswith("| flag |")))].strip("|").split("|")]
    cells = {line.strip("|").split("|")[0].strip().strip("`-"): [c.strip() for c in line.strip("|").split("|")]
             for line in table.splitlines() if line.startswith("| `--")}
    for name, values in presets.PAPER.items():
        shown = help_defaults(name, monkeypatch)
        column = header.index(name.removeprefix("paper_"))
        for flag, value in values.items():
            assert shown[flag] == str(value), (name, flag)
            assert cells[flag][column].strip("`") == str(value), (name, flag, cells[flag][column])


def test_the_hardware_arithmetic_by_hand():
    sys.path.insert(0, str(ROOT / "bench"))
    import hardware
    config = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2,
              "intermediate_size": 128, "vocab_size": 1000}
    m = hardware.memory(config, params=10 * 2**30, gpus=8, sample_rows=4, tokens_per_row=1024,
                        micro_batch_tokens=2048, logprob_chunk=256)
    # 12 B x 10 Gi / 8; 2 B x 10 Gi; 4 rows x 1024 tokens x (2 x 2 layers x 2 heads x 16 dims x 2 B); 4 B x 10 Gi / 8
    assert m["state"] == 15 and m["sampler"] == 20 and m["grads"] == 5 and m["refresh"] == 40 and m["startup"] == 80
    assert m["kv cache"] * 2**30 == 4 * 1024 * 2 * 2 * 2 * 16 * 2
    assert m["activations"] * 2**30 == 2048 * 64 * 2 * 4 + 2048 * (8 * 64 + 6 * 128) * 2 + 256 * 1000 * 4 * 3
    assert m["peak"] == max(80, 15 + 20 + max(m["kv cache"], 5 + m["activations"], 40))
    for name in presets.PAPER:   # every paper preset fits the paper's 80 GB GPUs, one node of 8
        assert hardware.preset_memory(name, 8)["peak"] < 70, name

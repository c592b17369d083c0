"""The GPU check's plumbing, run on the CPU with a tiny random model: a GPU session gets one try at
`make gpu-check` (bench/gpu_check.py), so its sections must not break on something the CPU can catch."""

import importlib.util
import sys

from transformers import Qwen2Config

from conftest import ROOT


def load_bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = sys.modules[f"bench_{name}"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_config(folder=None):
    config = Qwen2Config(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    if folder:
        config.save_pretrained(folder)
    return config


def test_step_section_reports_seconds_per_phase(tmp_path):
    gpu_check = load_bench("gpu_check")
    tiny_config(tmp_path / "model")
    rows = gpu_check.run_step(f"random:{tmp_path / 'model'}", "tiny", ["--device", "cpu", "--batch_size", "2",
                              "--group_size", "2", "--max_new_tokens", "8", "--cuda_graphs", "false"], 2, tmp_path, 300)
    table = {what: value for _, what, value in rows}
    assert list(table) == ["tiny --device cpu --batch_size 2 --group_size 2 --max_new_tokens 8 --cuda_graphs false: "
                           + s for s in ("step 1 seconds", "step 1 peak GiB", "responses")], table
    assert all(f"{phase} " in next(iter(table.values())) for phase in gpu_check.PHASES)
    assert list(table.values())[1] == "not logged"        # peak memory is CUDA's
    assert (tmp_path / "step_tiny.log").read_text().startswith(sys.executable)
    assert "--save_every -1" in (tmp_path / "step_tiny.log").read_text()   # no checkpoint to write


def test_step_section_reports_a_run_that_fails(tmp_path):
    gpu_check = load_bench("gpu_check")
    rows = gpu_check.run_step(f"random:{tmp_path / 'missing'}", "missing", ["--device", "cpu"], 1, tmp_path, 300)
    assert rows[0][2].startswith("no step finished (exit 1)") and "no config.json" in rows[0][2]


def test_sampler_section_runs_all_three_samplers(capsys):
    bench_rollout = load_bench("rollout")
    results = bench_rollout.bench_random_model(tiny_config(), "cpu", (8, 16), 12, 1, 3350.0, prompt_len=5)
    assert [(r["sequences"], r["sampler"]) for r in results] == [
        (b, s) for b in (8, 16) for s in ("sample", "sample+graphs", "generate")]
    assert all(r["tokens_per_s"] > 0 and 0 < r["floor_fraction"] for r in results)
    assert "rows hit the limit" in capsys.readouterr().out

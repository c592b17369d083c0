"""A run folder received from someone else, or shared by two processes: no code runs from its pickles, one
writer at a time, no writes through links (runfolder.py and its use in train_grpo.py)."""
import json
import subprocess
import sys
import warnings

import pytest
import torch

import runfolder
import train_grpo
from conftest import ROOT, fake_reward, read_metrics, tiny_args


class Planted:
    """Unpickling this creates the marker file: what a crafted trainer_state.pt would do on resume."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def run_of_two_steps(qwen_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "2", "--eval_every", "0"))
    return out


def test_a_planted_pickle_in_the_state_file_never_runs(qwen_dir, run_of_two_steps, tmp_path):
    out, marker = run_of_two_steps, tmp_path / "marker"
    state = torch.load(out / "ckpt" / "trainer_state.pt", weights_only=True)   # a real state file loads so
    torch.save(state | {"extra": Planted(marker)}, out / "ckpt" / "trainer_state.pt")
    with pytest.raises(SystemExit) as info:
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    message = str(info.value.code)
    assert message.startswith("error: --resume: ") and "trainer_state.pt: holds an object" in message
    assert "refused, nothing was run" in message and "\n" not in message
    assert not marker.exists()
    assert [r["step"] for r in read_metrics(out)] == [0, 1]


def test_checkpoint_metadata_is_read_without_running_code(tmp_path):
    import torch.distributed.checkpoint as dcp
    model = torch.nn.Linear(3, 3)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    optimizer.step()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict
    with warnings.catch_warnings():   # one process, no process group: dcp says so
        warnings.simplefilter("ignore")
        dcp.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, checkpoint_id=str(tmp_path / "real"))
    runfolder.check_checkpoint_metadata(tmp_path / "real")   # the real thing passes
    marker = tmp_path / "marker"
    (tmp_path / "planted").mkdir()
    import pickle
    (tmp_path / "planted" / ".metadata").write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(runfolder.FolderError) as info:
        runfolder.check_checkpoint_metadata(tmp_path / "planted")
    assert "io.open is not part of a checkpoint's metadata" in str(info.value) and not marker.exists()


HOLD = """
import sys, time
sys.path.insert(0, {root!r})
import runfolder
runfolder.acquire({folder!r}, "test")
print("locked", flush=True)
time.sleep(120)
"""


def hold_lock(folder):
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(root=str(ROOT), folder=str(folder))],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_writer_is_refused_and_a_dead_ones_lock_is_taken_over(qwen_dir, run_of_two_steps, capsys):
    out = run_of_two_steps
    holder = hold_lock(out)        # a run still writing there (its own earlier start, a forgotten child, ...)
    try:
        with pytest.raises(SystemExit) as info:
            train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
        message = str(info.value.code)
        assert message.startswith(f"error: --out_dir {out}: in use by pid {holder.pid} ") and "\n" not in message
    finally:
        holder.kill()              # dies without releasing: the kernel drops the flock
        holder.wait()
    train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    assert f"taking over the lock of pid {holder.pid}" in capsys.readouterr().err
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]      # one row per step
    assert (out / runfolder.LOCK).read_text() == ""                   # released at the end


def test_two_trainers_started_together_leave_one_row_per_step(qwen_dir, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train_grpo.py"), *tiny_args(qwen_dir, out, "--max_steps", "3",
                                                                       "--eval_every", "0", "--save_every", "0")]
    runs = [subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for _ in range(2)]
    results = [(r.wait(timeout=600), r.stderr.read()) for r in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1], results
    refused = next(err for code, err in results if code == 1)
    assert refused.strip().splitlines()[-1].startswith("error: --out_dir ")   # "in use by pid" or "already holds a run"
    assert [r["step"] for r in read_metrics(out)] == [0, 1, 2]


@pytest.mark.parametrize("name", ["held_out.jsonl", "metrics.jsonl", "rollouts.jsonl", "ckpt.old"])
def test_a_link_out_of_the_folder_is_refused_and_its_target_kept(qwen_dir, run_of_two_steps, tmp_path, name):
    out, target = run_of_two_steps, tmp_path / "elsewhere"
    target.write_text("precious\n")
    link = out / name
    if link.exists():
        link.unlink()
    link.symlink_to(target)
    with pytest.raises(SystemExit) as info:
        train_grpo.main(tiny_args(qwen_dir, out, "--max_steps", "3", "--eval_every", "0", "--resume"))
    message = str(info.value.code)
    assert message == (f"error: --out_dir {link}: a link to {target}, outside the folder; a run writes only its "
                       f"own files (remove the link)")
    assert target.read_text() == "precious\n"


def test_files_are_replaced_not_written_through_a_link(tmp_path):
    target, folder = tmp_path / "target", tmp_path / "folder"
    target.write_text("precious\n")
    folder.mkdir()
    (folder / "config.json").symlink_to(target)
    runfolder.write_text(folder / "config.json", "{}\n")
    assert target.read_text() == "precious\n" and not (folder / "config.json").is_symlink()
    (folder / "metrics.jsonl").symlink_to(target)
    with pytest.raises(runfolder.FolderError) as info:
        runfolder.append_text(folder / "metrics.jsonl", "{}\n")
    assert "a link is never written through" in str(info.value) and target.read_text() == "precious\n"


def test_eval_holds_its_output_folder_and_refuses_a_second_writer(tiny_model_dir, tmp_path):
    import eval as evaluation
    out = tmp_path / "eval"
    holder = hold_lock(out)
    try:
        with pytest.raises(SystemExit) as info:
            evaluation.main(["--model", str(tiny_model_dir), "--benchmarks", "gsm8k", "--limit", "2",
                             "--out_dir", str(out), "--max_new_tokens", "4"])
        assert str(info.value.code).startswith(f"error: {out}: in use by pid {holder.pid}")
        assert not (out / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_checkpoint_without_its_tokenizer_is_one_line_everywhere(qwen_dir, tmp_path, tiny_tokenizer):
    import shutil
    import eval as evaluation
    import rollout
    bare = tmp_path / "bare"
    shutil.copytree(qwen_dir, bare)
    for f in bare.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
            f.unlink()
    with pytest.raises(rollout.ModelLoadError, match="no tokenizer in the folder"):
        rollout.load_model(str(bare))
    with pytest.raises(SystemExit) as info:
        train_grpo.main(tiny_args(bare, tmp_path / "run"))
    assert str(info.value.code).startswith(f"error: --model {bare}: no tokenizer in the folder")
    out = tmp_path / "eval"
    with pytest.raises(SystemExit) as info:
        evaluation.main(["--model", str(bare), "--benchmarks", "gsm8k", "--limit", "2", "--out_dir", str(out)])
    assert str(info.value.code).startswith(f"error: --model {bare}: no tokenizer in the folder")
    shutil.copytree(qwen_dir, bare, dirs_exist_ok=True)           # fixed: the same --out_dir is not blocked
    evaluation.main(["--model", str(bare), "--benchmarks", "gsm8k", "--limit", "2", "--out_dir", str(out),
                     "--max_new_tokens", "4"])
    assert (out / "summary.json").exists()


def test_messages_name_the_flag_at_fault(qwen_dir, tmp_path):
    data = tmp_path / "forty.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)}) + "\n"
                            for i in range(40)))
    with pytest.raises(SystemExit) as info:   # the default --eval_size 128 takes every problem
        train_grpo.main(["--model", str(qwen_dir), "--dataset", str(data), "--out_dir", str(tmp_path / "run"),
                         "--batch_size", "2", "--eval_size", "128", "--eval_every", "1"])
    assert str(info.value.code).startswith("error: --eval_size 128: ")
    with pytest.raises(SystemExit) as info:
        train_grpo.main(["--model", str(qwen_dir), "--dataset", str(data), "--out_dir", str(tmp_path / "run"),
                         "--batch_size", "2", "--eval_size", "39", "--eval_every", "1"])
    assert str(info.value.code) == (f"error: --eval_size 39: holds out 39 problems of --dataset {data}, leaving 1 to "
                                    f"train on, fewer than --batch_size 2; lower --eval_size or give --eval_dataset")
    with pytest.raises(SystemExit, match="--dist_timeout 0.0: needs minutes > 0"):
        train_grpo.main(tiny_args(qwen_dir, tmp_path / "run", "--dist_timeout", "0"))


def test_the_reward_cli_prints_a_huge_answer_cut_short(tmp_path):
    response = tmp_path / "r.txt"
    response.write_text("\\boxed{" + "7" * 100_000 + "}")
    out = subprocess.run([sys.executable, str(ROOT / "reward.py"), "--file", str(response), "7"], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.splitlines()[0] == f"extracted: '{'7' * 150} ... {'7' * 50} (100000 characters)'"
    assert out.stdout.splitlines()[1] == "reward: 0.0"

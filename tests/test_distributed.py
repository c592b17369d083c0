"""Several processes on this CPU (torchrun, gloo): DDP and FSDP2 runs against a one-process run.

The reference is the same command in one plain process: the rollouts must be the same (each rollout's
random stream is its own), the metrics and the weights equal to float tolerance. A gradient summed
instead of averaged across ranks (pytorch#162338 was that bug for FSDP2 on gloo) would double the update
and fail here."""
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import distributed
from conftest import ROOT, read_metrics

RUN = """
import sys
sys.path.insert(0, {root!r})
import train_grpo, train_hicra
train_grpo.math_reward = lambda text, gold, strict=False: float(len(text) % 3 == 0)   # a learning signal
args = sys.argv[1:]
(train_hicra.main if args[0] == "hicra" else train_grpo.main)(args[1:])
"""

# HICRA's placebo, two mini-batches, a filter, a per-sequence loss, KL, an entropy bonus and the gradient cosine:
# every part of the step that needs the whole step's counts or a rollout's own seed (the VLM runs below add the
# top-entropy tokens, whose quantile is over every rank's).
FLAGS = ["--dataset", "synthetic:1", "--num_problems", "40", "--batch_size", "4", "--group_size", "4",
         "--max_new_tokens", "16", "--lr", "1e-4", "--warmup_steps", "0", "--eval_every", "2", "--eval_size", "4",
         "--save_every", "1", "--micro_batch_tokens", "200", "--plot", "false", "--mask", "random",
         "--mini_batches", "2", "--skip_zero_var", "--loss_agg", "seq_mean_token_mean", "--kl_coef", "0.05",
         "--entropy_coef", "0.01", "--grad_cosine_every", "1"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(tmp_path, model_dir, out, *extra, ranks=1, method="hicra", check=True):
    script = tmp_path / "run.py"
    script.write_text(RUN.format(root=str(ROOT)))
    args = [method, "--model", str(model_dir), "--out_dir", str(out), *FLAGS, *extra]
    if ranks == 1:
        command = [sys.executable, str(script), *args]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{free_port()}", str(script), *args]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def assert_same_run(one, other, steps):
    a, b = read_metrics(one), read_metrics(other)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(steps + 1))
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), key
    assert any(r.get("loss") for r in a), "the test needs real updates"
    # The same rollouts, to the character.
    assert (one / "rollouts.jsonl").read_text() == (other / "rollouts.jsonl").read_text()
    wa, wb = load_file(str(one / "ckpt" / "model.safetensors")), load_file(str(other / "ckpt" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], atol=1e-5), key


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_tokenizer):
    """The reference: two steps in one plain process."""
    from conftest import build_model
    tmp = tmp_path_factory.mktemp("one")
    model_dir = tmp / "model"
    build_model("qwen2", len(tiny_tokenizer)).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    launch(tmp, model_dir, tmp / "run", "--max_steps", "2")
    return model_dir, tmp / "run"


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp2"])
def test_two_ranks_train_exactly_as_one(one_process, tmp_path, sharding):
    model_dir, reference = one_process
    launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "2", *sharding, ranks=2)
    assert_same_run(reference, tmp_path / "run", 2)
    # The checkpoint is a Hugging Face folder whatever the sharding.
    from transformers import AutoModelForCausalLM
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "ckpt").config.model_type == "qwen2"
    if sharding:
        assert (tmp_path / "run" / "ckpt" / "optimizer" / ".metadata").is_file()


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp2"])
def test_resume_on_two_ranks(one_process, tmp_path, sharding):
    model_dir, reference = one_process
    launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "1", *sharding, ranks=2)
    launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "2", "--resume", *sharding, ranks=2)
    assert_same_run(reference, tmp_path / "run", 2)


def test_ddp_checkpoint_resumes_on_one_rank_and_fsdp_refuses_in_one_line(one_process, tmp_path):
    model_dir, reference = one_process
    launch(tmp_path, model_dir, tmp_path / "ddp", "--max_steps", "1", ranks=2)
    launch(tmp_path, model_dir, tmp_path / "ddp", "--max_steps", "2", "--resume")
    assert_same_run(reference, tmp_path / "ddp", 2)
    launch(tmp_path, model_dir, tmp_path / "fsdp", "--max_steps", "1", "--fsdp", ranks=2)
    result = launch(tmp_path, model_dir, tmp_path / "fsdp", "--max_steps", "2", "--resume", "--fsdp", check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == \
        "error: --fsdp: shards over several ranks; launch with torchrun --nproc_per_node N (N >= 2)"


def test_dynamic_sampling_on_two_ranks_trains_the_groups_one_process_does(one_process, tmp_path):
    """Each rank draws its block of every draw; the chosen groups are then dealt to the ranks in blocks, so a
    group sampled on one rank is trained on another: the run must still equal one process's."""
    model_dir, _ = one_process
    refill = ["--max_steps", "2", "--dynamic_sampling", "--dynamic_sampling_rounds", "3"]
    launch(tmp_path, model_dir, tmp_path / "one", *refill)
    launch(tmp_path, model_dir, tmp_path / "two", *refill, ranks=2)
    assert_same_run(tmp_path / "one", tmp_path / "two", 2)
    assert any(r.get("ds_draws", 1) > 1 for r in read_metrics(tmp_path / "one")), "the test needs a refill"


def test_prompts_that_do_not_split_into_whole_groups_are_refused(one_process, tmp_path):
    model_dir, _ = one_process
    result = launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "1", "--batch_size", "3", ranks=2,
                    check=False)
    assert result.returncode != 0
    assert "error: --batch_size 3: does not split into whole groups over 2 ranks" in result.stderr
    assert not (tmp_path / "run").exists()


def test_two_nodes_on_localhost_rendezvous_and_train(one_process, tmp_path):
    """`torchrun --nnodes 2` twice, as on two machines: one process each, one rendezvous."""
    model_dir, reference = one_process
    script = tmp_path / "run.py"
    script.write_text(RUN.format(root=str(ROOT)))
    port = free_port()
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "hicra-test",
               str(script), "hicra", "--model", str(model_dir), "--out_dir", str(tmp_path / "run"), *FLAGS,
               "--max_steps", "2"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=600)
        assert node.returncode == 0, err[-3000:]
    assert_same_run(reference, tmp_path / "run", 2)


def test_each_rank_takes_a_block_of_whole_prompts():
    class Fake:
        world = 2

    shares = []
    for rank in range(2):
        Fake.rank = rank
        shares.append(distributed.rank_share(Fake, [10, 11, 12, 13]))
    assert shares == [[10, 11], [12, 13]]     # prompts, so every rollout of a group is on one rank


def test_fsdp_resumes_on_another_number_of_ranks(one_process, tmp_path):
    """torch.distributed.checkpoint reshards the optimizer state: 2 ranks, then 3 (6 prompts split both ways)."""
    model_dir, _ = one_process
    six = ["--batch_size", "6"]
    launch(tmp_path, model_dir, tmp_path / "one", "--max_steps", "2", *six)
    launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "1", "--fsdp", *six, ranks=2)
    launch(tmp_path, model_dir, tmp_path / "run", "--max_steps", "2", "--resume", "--fsdp", *six, ranks=3)
    assert_same_run(tmp_path / "one", tmp_path / "run", 2)


def test_an_fsdp_checkpoint_of_tied_embeddings_holds_the_one_process_tensor_names(tmp_path, tiny_tokenizer):
    """SmolLM2 ties lm_head to the embedding: the one-process checkpoint stores the weight once, and so must
    FSDP's (a second copy costs 0.5 GB a checkpoint at 0.5B, and a loader that unties them would diverge)."""
    from transformers import AutoModelForCausalLM, Qwen2Config
    config = Qwen2Config(vocab_size=len(tiny_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, bos_token_id=0,
                         eos_token_id=2, pad_token_id=3, tie_word_embeddings=True)
    torch.manual_seed(0)
    model_dir = tmp_path / "tied"
    AutoModelForCausalLM.from_config(config).save_pretrained(model_dir)
    tiny_tokenizer.save_pretrained(model_dir)
    launch(tmp_path, model_dir, tmp_path / "one", "--max_steps", "1")
    launch(tmp_path, model_dir, tmp_path / "fsdp", "--max_steps", "1", "--fsdp", ranks=2)
    one = load_file(str(tmp_path / "one" / "ckpt" / "model.safetensors"))
    fsdp = load_file(str(tmp_path / "fsdp" / "ckpt" / "model.safetensors"))
    assert "lm_head.weight" not in one and fsdp.keys() == one.keys()
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "ckpt")
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()   # still tied


@pytest.fixture(scope="module")
def vision_one_process(tmp_path_factory):
    """The tiny Qwen2.5-VL, one step in one process, on a file of image rows and text rows: a rank's block of
    prompts may hold no image (its vision tower then runs on a blank grid, weighted 0: speed.completion_logprobs' blank row)."""
    import json

    from data import json_row, load_problems
    tmp = tmp_path_factory.mktemp("vision-one")
    rows = load_problems("synthetic_image:1", limit=8, seed=0) + load_problems("synthetic:2", limit=8, seed=0)
    for k, row in enumerate(rows):
        row["id"] = f"row-{k}"
    (tmp / "mixed.jsonl").write_text("".join(json.dumps(json_row(r)) + "\n" for r in rows))
    flags = ["--max_steps", "1", "--dataset", str(tmp / "mixed.jsonl"), "--eval_every", "0", "--mask", "entropy",
             "--top_entropy_quantile", "0.5"]
    model = f"random:{ROOT / 'configs' / 'qwen2.5-vl-tiny'}"
    launch(tmp, model, tmp / "run", *flags)
    return model, flags, tmp / "run"


@pytest.mark.parametrize("sharding", [[], ["--fsdp"]], ids=["ddp", "fsdp2"])
def test_a_vision_language_model_trains_on_two_ranks_exactly_as_one(vision_one_process, tmp_path, sharding):
    """Its vision blocks sharded too under FSDP2, the images' gradient reaching the vision tower, the same run."""
    model, flags, reference = vision_one_process
    launch(tmp_path, model, tmp_path / "two", *flags, *sharding, ranks=2)
    assert_same_run(reference, tmp_path / "two", 0)   # one step, no evaluation row
    rollouts = (reference / "rollouts.jsonl").read_text()
    assert "Solve the problem in the image." in rollouts and "What is" in rollouts   # both kinds of row
    (row,) = read_metrics(reference)   # HICRA's entropy variant marks tokens: the gradient cosine is a real angle
    assert row["marked_token_frac"] > 0 and row["grad_cosine_grpo"] < 1 - 1e-6
    start = distributed.rollout.load_model(model)[0].state_dict()
    trained = distributed.rollout.load_model(str(tmp_path / "two" / "ckpt"))[0].state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in trained if k.startswith("model.visual"))

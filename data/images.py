"""Images in problems: the row format, its checks, and the offline synthetic image task.

A row with images carries `images`, a list with one entry per `<image>` placeholder in `problem`, in order:
  * a path, relative to the data file (or absolute): "images/0001.png"
  * embedded bytes, base64 in JSON: {"bytes": "iVBORw0KGgo..."}
The loader (data.read_jsonl) checks that the placeholders and the images pair up and that every image file
exists, and hands rows on with each entry as an absolute path (str) or the image's bytes (bytes). The prompt
builder (rollout.encode_problems) puts each image where its placeholder was.

`synthetic_image:<level>` is data/synthetic.py's problems of that level drawn into a picture: the prompt says
only "<image> Solve the problem in the image.", so the model must read the image to earn the reward.
"""
from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import io
from contextlib import contextmanager
from pathlib import Path

PLACEHOLDER = "<image>"
SYNTHETIC_IMAGE_PROMPT = f"{PLACEHOLDER}\nSolve the problem in the image."


def checked_images(row: dict, where: str, base: Path) -> list:
    """row["images"] as absolute paths and bytes, or a one-line ValueError naming what is wrong (`where`: the
    row's file and line). A row without images must have no placeholder."""
    images = row.get("images") or []
    if not isinstance(images, list):
        raise ValueError(f"{where}: field 'images' must be a list")
    placeholders = row["problem"].count(PLACEHOLDER)
    if placeholders != len(images):
        raise ValueError(f"{where}: {placeholders} {PLACEHOLDER} placeholder(s) in 'problem' but {len(images)} "
                         f"image(s) in 'images'; each placeholder needs its image")
    out = []
    for k, item in enumerate(images):
        if isinstance(item, str) and item:
            path = (base / item).resolve()
            if not path.is_file():
                raise ValueError(f"{where}: image {k} '{item}' not found (looked for {path})")
            out.append(str(path))
        elif isinstance(item, dict) and isinstance(item.get("bytes"), str):
            try:
                out.append(base64.b64decode(item["bytes"], validate=True))
            except (binascii.Error, ValueError):
                raise ValueError(f"{where}: image {k}: 'bytes' is not base64") from None
        else:
            raise ValueError(f"{where}: image {k} must be a path or {{\"bytes\": <base64>}}, got {type(item).__name__}")
    return out


def json_images(images: list) -> list:
    """Entries as the loader hands them on, back in the row format: paths stay, bytes become {"bytes": base64}."""
    return [item if isinstance(item, str) else {"bytes": base64.b64encode(item).decode("ascii")} for item in images]


def image_key(item) -> str:
    """What tells two images apart in problem keys: a file's absolute path, or the digest of the bytes."""
    return item if isinstance(item, str) else hashlib.sha1(item).hexdigest()[:16]


@contextmanager
def opened(item):
    """The PIL image of an entry as the loader hands it on (path or bytes), lazily (its header read, nothing
    decoded until asked); a one-line ValueError naming the entry when it is no image PIL reads, or one past
    PIL's decompression-bomb limit."""
    from PIL import Image

    try:
        with Image.open(item if isinstance(item, str) else io.BytesIO(item)) as image:
            yield image
    except (Image.UnidentifiedImageError, Image.DecompressionBombError, OSError) as e:
        name = item if isinstance(item, str) else f"{len(item)} embedded bytes"
        raise ValueError(f"image {name}: cannot be read ({e})") from None


def open_image(item):
    """A PIL image (RGB) from an entry as the loader hands it on (path or bytes)."""
    with opened(item) as image:
        return image.convert("RGB")


def image_size(item) -> tuple[int, int]:
    """(width, height) of an entry, from the file's header alone (nothing is decoded)."""
    with opened(item) as image:
        return image.size


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont
    return ImageFont.load_default()


def render(text: str, height: int = 56) -> bytes:
    """`text` drawn in black on one line on white, as a PNG (PIL's default font, no font file needed; its pixels
    may differ between Pillow builds, with and without FreeType); at least 224 pixels wide, wider for long texts, a multiple of 28 (Qwen2.5-VL's patch grid)."""
    from PIL import Image, ImageDraw

    width = max(224, -(-(6 * len(text) + 8) // 28) * 28)
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((4, height // 2 - 6), text, fill="black", font=_font())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_stream(difficulty: int = 1, seed: int = 0):
    """Endless synthetic problems of one level as image rows: the problem drawn, the prompt generic."""
    from .synthetic import stream

    for row in stream(difficulty, seed):
        yield {**row, "id": row["id"].replace("synthetic-", "synthetic_image-", 1), "problem": SYNTHETIC_IMAGE_PROMPT,
               "images": [render(row["problem"])], "image_text": row["problem"], "source": "synthetic_image"}

"""A run folder that is safe to receive, share and restart: one writer at a time, files replaced rather than
written through links, and state files read without running code. train_grpo.py, eval.py and analyze.py use it
for the folders they write. Plumbing: the algorithm (train_grpo.py) does not depend on reading this file.

The trust model (README, "Crashes, restarts and bad flags"): a run folder is data. Reading or resuming one that
came from someone else runs none of its code: trainer_state.pt loads with torch.load(weights_only=True) (tensors,
numbers, strings and containers only), and the metadata of an FSDP checkpoint, which torch.distributed.checkpoint
unpickles with plain pickle, is first read here by an unpickler that admits only that metadata's own classes.
The model folder is a Hugging Face folder of safetensors, loaded without trust_remote_code. A link in the folder
that points outside it is refused, so a resumed run never writes through it.

One writer: each folder has a lock file, .lock, held with flock(2) while a process writes there and naming it
(pid, host, command). The kernel drops the lock when the process dies, however it dies, so a stale .lock is
taken over; a live one is refused in one line naming its pid. flock works between processes of one machine;
on a shared file system the lock file also names the host, and a lock left by another host is refused with
the path to remove if that run is gone.
"""
import fcntl
import json
import os
import pickle
import socket
import sys
import time
from pathlib import Path

LOCK = ".lock"
_held: dict[str, int] = {}    # lock file -> the descriptor whose flock this process holds


class FolderError(Exception):
    """A run folder that cannot be used as asked, in one line naming the file."""


def acquire(folder, owner: str, lock: str = LOCK):
    """Lock `folder` (created if missing) for this process, or raise FolderError naming the holder. `lock`
    names the lock file: another name locks another set of the folder's files (analyze.py's, beside a run)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / lock
    refuse_links(folder)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise FolderError(f"{path}: cannot open the lock file ({e.strerror})") from None
    holder = _holder(fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = f"pid {holder.get('pid', '?')}" + (f" ({holder['command']})" if holder.get("command") else "")
        raise FolderError(f"{folder}: in use by {who} since {holder.get('since', '?')}; wait for it to end or "
                          f"stop it (two writers would interleave its files)") from None
    if holder.get("host") not in (None, socket.gethostname()):
        os.close(fd)
        raise FolderError(f"{folder}: locked by pid {holder.get('pid', '?')} on host {holder['host']}; if that run "
                          f"has ended, remove {path}")
    if holder.get("pid"):
        print(f"{folder}: taking over the lock of pid {holder['pid']}, which ended without releasing it",
              file=sys.stderr)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "owner": owner,
              "command": " ".join(sys.argv)[:300], "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    _held[str(path.resolve())] = fd


def release(folder, lock: str = LOCK):
    """Let go of the lock on `folder` if this process holds it (the file stays, emptied: removing it while
    another process waits on it would let two processes lock two different files)."""
    fd = _held.pop(str((Path(folder) / lock).resolve()), None)
    if fd is not None:
        os.ftruncate(fd, 0)
        os.close(fd)


def _holder(fd: int) -> dict:
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError, OSError):
        return {}


def refuse_links(folder):
    """FolderError for an entry of `folder` that is a link leading outside it: a run would write through it."""
    folder = Path(folder)
    root = folder.resolve()
    for entry in folder.iterdir() if folder.is_dir() else ():
        if entry.is_symlink():
            target = entry.resolve()
            if target != root and root not in target.parents:
                raise FolderError(f"{entry}: a link to {target}, outside the folder; a run writes only its own "
                                  f"files (remove the link)")


def write_text(path, text: str):
    """Replace the file at `path` with `text`: written beside it, then renamed over it, so a link there is
    replaced rather than followed and a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def open_append(path):
    """The file at `path` opened to append text, never through a link (O_NOFOLLOW)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:
        raise FolderError(f"{path}: cannot append ({e.strerror}; a link is never written through)") from None
    return os.fdopen(fd, "a", encoding="utf-8")


def append_text(path, text: str):
    """Append to the file at `path`, never through a link."""
    with open_append(path) as f:
        f.write(text)


def append_jsonl(path, row: dict):
    """One JSON line appended to the file at `path` (metrics.jsonl, resumes.jsonl), never through a link."""
    append_text(path, json.dumps(row) + "\n")


# Classes that torch.distributed.checkpoint's metadata is made of (what its .metadata file may name).
_DCP = "torch.distributed.checkpoint"
_METADATA_CLASSES = {
    (f"{_DCP}.metadata", name) for name in ("Metadata", "MetadataIndex", "ChunkStorageMetadata", "TensorProperties",
                                          "TensorStorageMetadata", "BytesStorageMetadata", "StorageMeta",
                                          "_MEM_FORMAT_ENCODING")
} | {(f"{_DCP}.filesystem", "_StorageInfo"), ("torch", "Size"), ("torch.serialization", "_get_layout"),
     ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("collections", "OrderedDict")}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        import torch
        if (module, name) in _METADATA_CLASSES or (module == "torch" and isinstance(getattr(torch, name, None),
                                                                                    torch.dtype)):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def check_checkpoint_metadata(folder):
    """Read a distributed checkpoint's .metadata with an unpickler that builds only metadata classes, before
    torch.distributed.checkpoint unpickles it with plain pickle (which would run whatever it names)."""
    path = Path(folder) / ".metadata"
    try:
        with open(path, "rb") as f:
            _MetadataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, OSError) as e:
        raise FolderError(f"{path}: not a checkpoint's metadata ({str(e)[:150]}); refused, nothing was run") from None

"""Flag checks shared by the command lines.

Each script keeps one table of (flag, test, what the flag needs) next to its flags (the trainers': flags.py), and `problem`
turns the first row that fails into a one-line message naming the flag, before anything is loaded:

    CHECKS = [("lr", positive, "a number > 0"), ("top_p", fraction, "a number in (0, 1]")]
    message = problem(vars(args), CHECKS)       # "--top_p 1.5: needs a number in (0, 1]" or None

A flag whose value is None (not given, no default) is not checked. NaN and infinities fail every
numeric test, so `--lr nan` is refused rather than silently training on NaN. Plumbing: the algorithm
(train_grpo.py) does not depend on reading this file.
"""
import math


def number(x) -> bool:
    """A finite int or float (booleans are not numbers here)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def positive(x) -> bool:
    return number(x) and x > 0


def non_negative(x) -> bool:
    return number(x) and x >= 0


def fraction(x) -> bool:
    """In (0, 1]."""
    return number(x) and 0 < x <= 1


def at_least(n):
    def test(x) -> bool:
        return number(x) and x >= n
    return test


def one_of(*options):
    def test(x) -> bool:
        return x in options
    return test


def problem(values: dict, table) -> str | None:
    """The first failed check of `table` on `values` ({flag: value}) as a one-line message, or None."""
    for flag, test, need in table:
        value = values.get(flag)
        if value is not None and not test(value):
            shown = repr(value) if isinstance(value, str) else value   # a string in quotes, so '' shows
            return f"--{flag} {shown}: needs {need}"
    return None


def device_problem(name: str) -> str | None:
    """Why `--device name` cannot work here (a one-line message), or None."""
    import torch
    try:
        device = torch.device(name)
    except RuntimeError:
        return f"--device {name!r}: not a device (cpu, cuda, cuda:1, ...)"
    if device.type not in ("cpu", "cuda"):
        return f"--device {name}: only cpu and cuda are supported"
    if device.type == "cuda" and not torch.cuda.is_available():
        return f"--device {name}: no CUDA GPU is visible here (use --device cpu)"
    return None

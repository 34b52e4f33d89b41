"""JSON that a model file holds, read within bounds: its size checked before it is read, its nesting
before it is parsed, so a hostile file is refused in one line instead of filling memory or the stack.

Python's ``json`` recurses once per level (100,000 nested brackets raise RecursionError) and turns a
number of more than 4300 digits into a ValueError of its own; both are refused here, naming the file.
No torch here: the CLI reads configs before it imports torch.
"""

from __future__ import annotations

import itertools
import json
import operator
import os
import re
from typing import Any

from .errors import ModelError

MB = 1 << 20
# The most levels of nesting a model's JSON needs, with room: config.json has 2 (id2label), a
# safetensors header 3 (name -> entry -> shape), transformers' task_specific_params a few more.
MAX_DEPTH = 64
# A JSON string (escapes included; an unterminated one runs to the end, so the scan stays linear).
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?', re.DOTALL)
# Brackets to the bytes whose running sum, less one a bracket, is the depth: an opening one 2, a closing one 0.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def read_json(path: str | os.PathLike, most_bytes: int, what: str | None = None) -> Any:
    """The JSON value of a file of at most ``most_bytes`` bytes nested at most ``MAX_DEPTH`` deep.
    ``what`` names the kind of file in the message about its size (its name otherwise)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > most_bytes:
                kind = what or os.path.basename(path)
                raise ModelError(
                    f"{path}: {_size(size)}, larger than a {kind} can be (at most {_size(most_bytes)})",
                    hint="the file is damaged or not what it is named",
                )
            raw = f.read(most_bytes + 1)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read ({exc.strerror})") from None
    return loads(raw, str(path))


def loads(raw: bytes, source: str) -> Any:
    """The JSON value of ``raw`` (UTF-8), its nesting checked before it is parsed; errors name ``source``."""
    depth = nesting(raw)
    if depth > MAX_DEPTH:
        raise ModelError(
            f"{source}: JSON nested {depth} levels deep, more than a model file needs (at most {MAX_DEPTH})",
            hint="the file is damaged or not what it is named",
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except UnicodeDecodeError:
        raise ModelError(f"{source}: not valid JSON (not UTF-8 text)") from None
    except ValueError as exc:  # a number of more than 4300 digits (int's limit on conversions from text)
        raise ModelError(f"{source}: not valid JSON ({str(exc).split(':')[0]})") from None


def nesting(raw: bytes) -> int:
    """The deepest nesting of brackets outside strings in a JSON text (unbalanced ones counted as they
    open), found without recursion: strings removed, then a running sum over the brackets left."""
    brackets = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(map(operator.sub, itertools.accumulate(brackets), itertools.count(1))))


def _size(n: int) -> str:
    return f"{n / MB:.1f} MB" if n >= MB else f"{n} bytes"

"""Click parameter types: sizes ("8x8"), per-axis ints ("2" or "2,1"), padding, kernel
specs (``sobel-x``, ``gaussian:5:1.0``, ``"[[1,-1]]"``, ``k.npy``) and layer specs
(``conv:k=5,s=1,p=2``). Literals are parsed with ``json`` (never ``eval``).

Only the standard library is imported here; NumPy is imported when a kernel is built.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import click

_INT = re.compile(r"^[+-]?\d+$")
#: The largest int an option takes (stride, padding, dilation, sizes, ``--chunks``...):
#: 2**63 - 1, the largest index NumPy and Numba hold; larger is a usage error.
MAX_INT = 2**63 - 1
#: The most layers ``fastconv shape`` computes: ``--repeat`` and the ``N*`` repeats of a
#: ``--layer`` stack together (a usage error beyond: no network has more, and each one is
#: a row of the table).
MAX_LAYERS = 10_000
#: The longest ``-k`` literal (characters): a kernel with more values belongs in a .npy.
MAX_LITERAL_CHARS = 100_000
#: A ``-k`` literal nests at most this deep (a kernel is 2-D, 3-D or 4-D).
MAX_LITERAL_DEPTH = 4


def _int(text: str) -> int | None:
    """An int from text, or None. Digits beyond any int64 give ``MAX_INT + 1`` (with the
    sign) without converting the text (``int()`` refuses more than 4300 digits)."""
    text = text.strip()
    if not _INT.match(text):
        return None
    if len(text.lstrip("+-").lstrip("0")) > 20:
        return -(MAX_INT + 1) if text.startswith("-") else MAX_INT + 1
    return int(text)


def _number(text: str) -> int | float | None:
    """An int or a finite float from text, or None (no eval: int()/float() only)."""
    text = text.strip()
    value = _int(text)
    if value is not None and abs(value) <= MAX_INT:
        return value
    try:  # a float, or an int too long for _int: float() gives inf beyond 1.8e308
        value = float(text)
    except ValueError:
        return None
    return value if value == value and abs(value) != float("inf") else None


def parse_size(text: str, *, minimum: int = 1) -> tuple[int, ...] | None:
    """``"8x8"`` -> ``(8, 8)``, ``"8"`` -> ``(8,)``, ``"4x8x8"`` -> ``(4, 8, 8)``; None if bad."""
    parts = text.lower().replace("×", "x").split("x")
    values = [_int(p) for p in parts]
    if not parts or any(v is None or v < minimum for v in values):
        return None
    return tuple(values)


def _check_max(ptype: click.ParamType, value, ints, param, ctx) -> None:
    """A usage error for any int above ``MAX_INT``."""
    if any(v > MAX_INT for v in ints):
        ptype.fail(f"{value!r}: too large; the largest value is 2**63-1 = {MAX_INT}",
                   param, ctx)


class SizeType(click.ParamType):
    """Spatial size as ``HxW`` (or ``N`` for every axis, or ``DxHxW``)."""

    name = "HxW"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        size = parse_size(str(value), minimum=self.minimum)
        if size is None:
            self.fail(
                f"{value!r}: expected a size like 8x8 (ints >= {self.minimum}, "
                "separated by 'x')",
                param,
                ctx,
            )
        _check_max(self, value, size, param, ctx)
        return size


class IntTupleType(click.ParamType):
    """An int for every axis, or one per axis: ``2`` or ``2,1`` (also ``2x1``)."""

    name = "N[,N]"

    def __init__(self, minimum: int = 1):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, (int, tuple)):
            return value
        parts = re.split(r"[,x]", str(value).strip().lower())
        values = [_int(p) for p in parts]
        if any(v is None or v < self.minimum for v in values) or len(values) > 3:
            self.fail(
                f"{value!r}: expected an int >= {self.minimum} or one per axis like 2,1",
                param,
                ctx,
            )
        _check_max(self, value, values, param, ctx)
        return values[0] if len(values) == 1 else tuple(values)


class PaddingType(click.ParamType):
    """Padding: ``1``, per axis ``1,2``, per-axis (before, after) pairs ``0:1,1:1``, or
    ``same`` / ``valid`` / ``full``."""

    name = "PADDING"
    STRINGS = ("same", "valid", "full")

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text in self.STRINGS:
            return text
        bad = (
            f"{value!r}: expected an int >= 0, one per axis like 1,2, (before:after) pairs "
            "like 0:1,1:1, or one of same/valid/full"
        )
        out = []
        for part in text.split(","):
            if ":" in part:
                pair = [_int(v) for v in part.split(":")]
                if len(pair) != 2 or any(v is None or v < 0 for v in pair):
                    self.fail(bad, param, ctx)
                out.append(tuple(pair))
            else:
                v = _int(part)
                if v is None or v < 0:
                    self.fail(bad, param, ctx)
                out.append(v)
        if len(out) > 3 or (any(isinstance(v, tuple) for v in out)
                            and not all(isinstance(v, tuple) for v in out)):
            self.fail(bad, param, ctx)
        flat = [v for item in out for v in (item if isinstance(item, tuple) else (item,))]
        _check_max(self, value, flat, param, ctx)
        return out[0] if len(out) == 1 and not isinstance(out[0], tuple) else tuple(out)


class FloatsType(click.ParamType):
    """One number, or one per output channel: ``0.5`` or ``0.5,-1,2``."""

    name = "B[,B...]"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        values = [_number(v) for v in str(value).split(",")]
        if any(v is None for v in values):
            self.fail(f"{value!r}: expected a number or comma-separated numbers like 0.5,-1",
                      param, ctx)
        return tuple(float(v) for v in values)


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class KernelSpec:
    """A parsed ``--kernel``: a file, a literal, or a named kernel with arguments."""

    text: str
    kind: str  # "file" | "literal" | "named"
    name: str = ""
    args: tuple = ()
    values: object = None  # nested lists for a literal

    def describe(self) -> str:
        return f"--kernel {self.text!r}"


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


class KernelType(click.ParamType):
    """``k.npy`` (a file), ``[[1,-1]]`` (a JSON literal), or ``name[:arg[:arg]]``
    (``sobel-x``, ``gaussian:5:1.0``; '-' and '_' are the same)."""

    name = "KERNEL"

    def convert(self, value, param, ctx):
        if isinstance(value, KernelSpec):
            return value
        text = str(value).strip()
        if text.lower().endswith(".npy"):
            return KernelSpec(text, "file")
        if text.startswith("["):
            values = self._literal(text, param, ctx)
            if not _numeric_nested(values):
                self.fail(f"{text!r}: expected nested lists of numbers like [[1,-1]]",
                          param, ctx)
            return KernelSpec(text, "literal", values=values)
        name, *raw = text.split(":")
        if not _NAME.match(name):
            self.fail(f"{text!r}: expected a .npy file, a named kernel like sobel-x or "
                      "gaussian:5:1.0, or a literal like [[1,-1]]", param, ctx)
        args = tuple(_number(a) for a in raw)
        if any(a is None for a in args):
            self.fail(f"{text!r}: kernel arguments must be numbers, as in gaussian:5:1.0",
                      param, ctx)
        return KernelSpec(text, "named", name=name.lower().replace("-", "_"), args=args)

    def _literal(self, text: str, param, ctx):
        """Nested lists of finite floats from a JSON literal: bounded length and depth
        (checked on the text, before parsing), every number a finite float."""
        short = text if len(text) <= 60 else text[:40] + "..." + text[-10:]
        if len(text) > MAX_LITERAL_CHARS:
            self.fail(f"{short!r}: a literal of {len(text)} characters is too long (at most "
                      f"{MAX_LITERAL_CHARS}); save a large kernel as .npy", param, ctx)
        depth = deepest = 0
        for ch in text:
            depth += (ch == "[") - (ch == "]")
            deepest = max(deepest, depth)
        if deepest > MAX_LITERAL_DEPTH:
            self.fail(f"{short!r}: nested {deepest} deep; a kernel literal has at most "
                      f"{MAX_LITERAL_DEPTH} levels (2-D to 4-D)", param, ctx)

        def refuse(constant):
            raise ValueError(f"{constant} is not a finite number")

        try:
            values = json.loads(text, parse_int=float, parse_constant=refuse)
        except json.JSONDecodeError as exc:
            self.fail(f"{short!r}: not a valid array literal ({exc.msg}); expected "
                      "nested lists of numbers like [[1,-1]]", param, ctx)
        except (ValueError, RecursionError) as exc:
            self.fail(f"{short!r}: not a valid array literal ({exc})", param, ctx)
        if not _all_finite(values):
            self.fail(f"{short!r}: every kernel value must be a finite number (one "
                      "overflows a float64)", param, ctx)
        return values


def _all_finite(values) -> bool:
    if isinstance(values, list):
        return all(_all_finite(v) for v in values)
    return not isinstance(values, float) or math.isfinite(values)


def _numeric_nested(values) -> bool:
    if isinstance(values, list):
        return len(values) > 0 and all(_numeric_nested(v) for v in values)
    return isinstance(values, (int, float)) and not isinstance(values, bool)


# ---------------------------------------------------------------------------- layers


@dataclass(frozen=True)
class LayerSpec:
    """One layer of ``fastconv shape --layer``: conv or pool with per-axis parameters."""

    text: str
    kind: str  # "conv" | "pool" | "adaptive"
    kernel: int | tuple
    stride: int | tuple
    padding: object
    dilation: int | tuple
    ceil_mode: bool = False
    repeat: int = 1
    output_size: tuple = ()  # kind "adaptive": the output size (adaptive:7x7)


_LAYER_KEYS = {
    "k": "kernel", "kernel": "kernel", "kernel_size": "kernel",
    "s": "stride", "stride": "stride",
    "p": "padding", "padding": "padding",
    "d": "dilation", "dilation": "dilation",
    "ceil": "ceil_mode", "ceil_mode": "ceil_mode",
}


class LayerType(click.ParamType):
    """``[N*]conv:k=5,s=1,p=2,d=1``, ``[N*]pool:k=2[,s=2,p=0,ceil=1]`` or
    ``adaptive:7x7`` (adaptive pooling to that output size); per-axis values as ``k=5x3``;
    ``N*`` repeats the layer N times (``10*conv:k=5``)."""

    name = "LAYER"

    def convert(self, value, param, ctx):
        if isinstance(value, LayerSpec):
            return value
        text = str(value).strip()
        usage = (f"{text!r}: expected a layer like conv:k=5,s=1,p=2 or pool:k=2 "
                 "(optionally N*conv:... to repeat it)")
        repeat = 1
        body = text
        if "*" in text:
            count, body = text.split("*", 1)
            repeat = _int(count)
            if repeat is None or repeat < 1:
                self.fail(usage, param, ctx)
            if repeat > MAX_LAYERS:
                self.fail(f"{text!r}: {count.strip()} repeats; at most {MAX_LAYERS} layers "
                          "are computed", param, ctx)
        kind, _, rest = body.partition(":")
        kind = kind.strip().lower()
        if kind == "adaptive":  # adaptive:7x7 (an output size; 1 = global pooling)
            out = parse_size(rest.strip(), minimum=1)
            if out is None:
                self.fail(f"{text!r}: expected an adaptive layer like adaptive:7x7 or "
                          "adaptive:1 (the output size)", param, ctx)
            return LayerSpec(text=text, kind=kind, kernel=1, stride=1, padding=0,
                             dilation=1, repeat=repeat, output_size=out)
        if kind not in ("conv", "pool"):
            self.fail(usage, param, ctx)
        fields: dict = {}
        for item in filter(None, (s.strip() for s in rest.split(","))):
            key, eq, raw = item.partition("=")
            key = _LAYER_KEYS.get(key.strip().lower())
            if not eq or key is None or key in fields:
                self.fail(f"{usage}; bad or repeated field {item!r} (fields: k, s, p, d, "
                          "ceil)", param, ctx)
            raw = raw.strip().lower()
            if key == "ceil_mode":
                if raw not in ("0", "1", "true", "false"):
                    self.fail(f"{usage}; ceil must be 0/1/true/false", param, ctx)
                fields[key] = raw in ("1", "true")
            elif key == "padding" and raw in PaddingType.STRINGS:
                fields[key] = raw
            else:
                size = parse_size(raw, minimum=0 if key == "padding" else 1)
                if size is None or any(v > MAX_INT for v in size):
                    self.fail(f"{usage}; {key} must be an int (at most 2**63-1) or per-axis "
                              "like 5x3, got "
                              f"{raw!r}", param, ctx)
                fields[key] = size[0] if len(size) == 1 else size
        if "kernel" not in fields:
            self.fail(f"{usage}; k= (the kernel size) is required", param, ctx)
        if kind == "conv" and fields.get("ceil_mode"):
            self.fail(f"{usage}; ceil applies to pool layers only", param, ctx)
        return LayerSpec(
            text=text,
            kind=kind,
            kernel=fields["kernel"],
            stride=fields.get("stride", fields["kernel"] if kind == "pool" else 1),
            padding=fields.get("padding", 0),
            dilation=fields.get("dilation", 1),
            ceil_mode=fields.get("ceil_mode", False),
            repeat=repeat,
        )


SIZE = SizeType()
INTS = IntTupleType()
PADDING = PaddingType()
KERNEL = KernelType()
LAYER = LayerType()
FLOATS = FloatsType()

"""Turns a .cu file into host C++ for the emulator: each launch `kernel<targs><<<cfg>>>(args)`
becomes `::emu::make_launch(kernel<targs>, "kernel<targs>", cfg).bounds(T)(args)`, where T is
the first argument of the kernel's __launch_bounds__ (when it has one), so the emulator checks
the block size against it. Nothing else changes: the PTX helpers and dynamic shared memory are
redefined by the emulation headers (see csrc/common/ptx.cuh, BNN_DYNAMIC_SMEM), and a #line
directive keeps diagnostics and coverage on the original file and lines.

Usage: rewrite.py IN.cu OUT.cpp
"""

from __future__ import annotations

import re
import sys

_BOUNDS = re.compile(r"__launch_bounds__\s*\(((?:[^()]|\([^()]*\))*)\)\s*([A-Za-z_]\w*)\s*\(")


def _split_top_level(args: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in args:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return parts + [cur]


def launch_bounds(src: str) -> dict[str, str]:
    """Kernel name -> its maximum threads per block expression."""
    return {m.group(2): _split_top_level(m.group(1))[0].strip() for m in _BOUNDS.finditer(src)}


def _kernel_start(s: str, j: int) -> int:
    """Start of the kernel expression (identifier with optional <...>) ending just before j,
    whitespace (a formatter's line break before <<<) allowed in between."""
    k = j
    while k > 0 and s[k - 1].isspace():
        k -= 1
    if s[k - 1] == ">":
        depth = 0
        k -= 1
        while True:
            c = s[k]
            if c == ">":
                depth += 1
            elif c == "<":
                depth -= 1
            if depth == 0:
                break
            k -= 1
    while k > 0 and (s[k - 1].isalnum() or s[k - 1] in "_:"):
        k -= 1
    return k


def rewrite(src: str, path: str) -> str:
    bounds = launch_bounds(src)
    out, i = [f'#line 1 "{path}"\n'], 0
    while True:
        j = src.find("<<<", i)
        if j < 0:
            out.append(src[i:])
            break
        k = _kernel_start(src, j)
        expr = src[k:j]
        base = expr.split("<")[0].split("::")[-1].strip()
        e = src.find(">>>", j)
        cfg = src[j + 3 : e]
        name = " ".join(expr.split()).replace('"', "'")
        launch = f'::emu::make_launch({expr}, "{name}", {cfg})'
        if base in bounds:
            launch += f".bounds({bounds[base]})"
        out.append(src[i:k])
        out.append(launch)
        i = e + 3
    return "".join(out)


if __name__ == "__main__":
    src_path, dst_path = sys.argv[1], sys.argv[2]
    with open(src_path) as f:
        text = f.read()
    with open(dst_path, "w") as f:
        f.write(rewrite(text, src_path))

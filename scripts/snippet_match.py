"""Whitespace-insensitive snippet matching for the bug-planting scripts: a snippet matches
where its non-whitespace characters occur, in order and contiguous, among the source's
non-whitespace characters, so reformatting the kernels (clang-format) does not unanchor it."""

from __future__ import annotations


def spans(src: str, text: str) -> list[tuple[int, int]]:
    """The [start, end) spans of src, from the first to the last matched character, where
    `text` occurs ignoring whitespace; non-overlapping, in order ([] for a blank text)."""
    pos = [i for i, c in enumerate(src) if not c.isspace()]
    flat = "".join(src[i] for i in pos)
    needle = "".join(text.split())
    out, j = [], flat.find(needle) if needle else -1
    while j >= 0:
        out.append((pos[j], pos[j + len(needle) - 1] + 1))
        j = flat.find(needle, j + len(needle))
    return out


def replace_once(src: str, text: str, new: str) -> tuple[str | None, int]:
    """(src with the single whitespace-insensitive occurrence of `text` replaced by `new`
    stripped, or None, the number of occurrences): None unless it occurs exactly once."""
    found = spans(src, text)
    if len(found) != 1:
        return None, len(found)
    a, b = found[0]
    return src[:a] + new.strip() + src[b:], 1

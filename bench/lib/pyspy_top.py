#!/usr/bin/env python3
"""Summarise a py-spy profile recorded with ``--format raw`` (collapsed stacks: ``frame;frame;... COUNT``).

usage: pyspy_top.py PROFILE.txt [N]

Prints, as markdown: the samples' share by source file (self time: the innermost frame), the top N functions
by self time, and the top N by inclusive time (the function anywhere on the stack, counted once per sample).
A frame reads ``function (path/to/file.py:LINE)``; lines are merged, paths are shortened to the part after
``site-packages/`` or the repository root.
"""

from __future__ import annotations

import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def parse(frame: str) -> tuple[str, str]:
    m = FRAME.match(frame.strip())
    if m is None:
        return frame.strip(), "?"
    return m.group("func"), short(m.group("file"))


def main() -> int:
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    self_fn: Counter[tuple[str, str]] = Counter()
    self_file: Counter[str] = Counter()
    incl_fn: Counter[tuple[str, str]] = Counter()
    total = 0
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count_text = line.rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            frames = [parse(fr) for fr in stack.split(";") if fr]
            # py-spy puts a "process"/"thread" frame first when asked to; keep real frames only
            frames = [fr for fr in frames if fr[1] != "?"] or frames
            if not frames:
                continue
            total += count
            self_fn[frames[-1]] += count
            self_file[frames[-1][1]] += count
            for fr in set(frames):
                incl_fn[fr] += count
    if not total:
        print("no samples")
        return 1
    print(f"{total} samples (idle threads excluded)\n")
    print("| self time by file | share |\n|---|---|")
    for file, c in self_file.most_common(n):
        print(f"| `{file}` | {100 * c / total:.1f} % |")
    print(f"\n| top {n} functions, self time | file | share |\n|---|---|---|")
    for (func, file), c in self_fn.most_common(n):
        print(f"| `{func}` | `{file}` | {100 * c / total:.1f} % |")
    print(f"\n| top {n} functions, inclusive | file | share |\n|---|---|---|")
    for (func, file), c in incl_fn.most_common(n):
        print(f"| `{func}` | `{file}` | {100 * c / total:.1f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

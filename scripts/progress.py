"""Condense `pip install -v` output into progress lines; the full log goes to a file.

Usage: pip install -v ... 2>&1 | python scripts/progress.py LOGFILE
Prints the packages being collected and the llama.cpp compile progress ([n/total]) about every 10%,
and on failure the caller shows the tail of LOGFILE. scripts/build_llama.py uses `condense` too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from typing import TextIO

_COMPILE_STEP = re.compile(r"^\s*\[(\d+)/(\d+)\]")


def condense(lines: Iterable[str], log: TextIO) -> None:
    """Write every line to ``log`` and print the few that tell a person how far it got."""
    last_decile = -1
    for line in lines:
        log.write(line)
        log.flush()
        text = line.strip()
        match = _COMPILE_STEP.match(text)
        if match:
            done, total = int(match.group(1)), int(match.group(2))
            decile = done * 10 // total
            if decile != last_decile:
                last_decile = decile
                print(f"    building llama.cpp: {done}/{total} compile steps", flush=True)
        elif text.startswith(("Collecting ", "Successfully installed", "ERROR", "error:")):
            print("    " + text[:160], flush=True)
        elif text.startswith("Building wheel for") and text.endswith("started"):
            note = " (llama.cpp takes 3-5 minutes on 2 cores; cached afterwards)"
            print("    " + text.split(" (")[0] + note, flush=True)


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as out:
        condense(sys.stdin, out)

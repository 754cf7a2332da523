"""Condense `pip install -v` output into progress lines; the full log goes to a file.

Usage: pip install -v ... 2>&1 | python scripts/progress.py LOGFILE
Prints the packages being collected and the llama.cpp compile progress ([n/total]) about every 10%,
and on failure the caller shows the tail of LOGFILE.
"""

from __future__ import annotations

import re
import sys

log = open(sys.argv[1], "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the pipe
compile_step = re.compile(r"^\s*\[(\d+)/(\d+)\]")
last_decile = -1
for line in sys.stdin:
    log.write(line)
    log.flush()
    text = line.strip()
    match = compile_step.match(text)
    if match:
        done, total = int(match.group(1)), int(match.group(2))
        decile = done * 10 // total
        if decile != last_decile:
            last_decile = decile
            print(f"    building llama.cpp: {done}/{total} compile steps", flush=True)
    elif text.startswith(("Collecting ", "Successfully installed", "ERROR", "error:")):
        print("    " + text[:160], flush=True)
    elif text.startswith("Building wheel for"):
        print("    " + text.split(" (")[0] + " (llama.cpp takes 3-5 minutes on 2 cores; cached afterwards)",
              flush=True)

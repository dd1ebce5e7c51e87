"""Wall time of ``geovr list-plugins`` vs ``python -c pass``, side by side in one run.

    python benchmarks/cli_startup.py [--repeat 10]

Prints the median of each and their ratio; the target is under 0.5 s absolute on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    # interleave to share machine noise
    base = timed([sys.executable, "-c", "pass"], 1)
    cli = timed([sys.executable, "-m", "geovr", "list-plugins", "--all"], 1)
    bases, clis = [base], [cli]
    for _ in range(args.repeat - 1):
        bases.append(timed([sys.executable, "-c", "pass"], 1))
        clis.append(timed([sys.executable, "-m", "geovr", "list-plugins", "--all"], 1))
    b, c = statistics.median(bases), statistics.median(clis)
    print(f"python -c pass            median {b * 1e3:7.1f} ms")
    print(f"geovr list-plugins --all  median {c * 1e3:7.1f} ms")
    print(f"ratio                     {c / b:7.2f}x   (target: < 500 ms absolute -> {'ok' if c < 0.5 else 'MISSED'})")


if __name__ == "__main__":
    main()

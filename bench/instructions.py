"""Instructions per POST, ours against the bare view: a figure the host's noise cannot move.

On these shared machines the CPU time of the same code moves by half from one minute to
the next (a POST in process: 2.3 to 4.9 ms in one hour), so an A/B of a change worth a few
per cent needs many rounds. valgrind's callgrind counts the instructions the process runs,
whatever else the machine does. `python -m bench.instructions [api|baseline ...] [--n LO,HI]`
runs each side's in-process POST loop (the Flask test client, as `bench.profile_api`: real
Postgres and Redis of a private stack) twice under callgrind, LO and HI requests after a
warm-up, and reports (count(HI) - count(LO)) / (HI - LO): the start-up cancels out. Both
sides run at once (the counts do not depend on load); about 7 minutes in all. The ratio
bare / ours is the CPU side of api_create's ratio (gunicorn's and wrk's share, the same for
both sides, is not in it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

WARM_UP = 20
SIDES = ("api", "baseline")


def inner(side: str, n: int) -> None:
    """The loop callgrind counts: WARM_UP + n POSTs of `side`."""
    from bench.profile_api import trivial_posts

    with trivial_posts(bare=side == "baseline") as (_, post):
        for _ in range(WARM_UP + n):
            post()


def counted(side: str, n: int) -> subprocess.Popen[str]:
    argv = [
        shutil.which("valgrind") or "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        "-m",
        "bench.instructions",
        "--inner",
        side,
        str(n),
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def collected(proc: subprocess.Popen[str]) -> int:
    _, err = proc.communicate()
    found = re.search(r"Collected : (\d+)", err)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"callgrind run failed ({proc.returncode}): {err[-2000:]}")
    return int(found.group(1))


def per_request(sides: tuple[str, ...], lo: int, hi: int) -> dict[str, float]:
    """Instructions per POST of each side; each side's two runs go one after the other,
    the sides side by side."""
    counts: dict[str, list[int]] = {side: [] for side in sides}
    for n in (lo, hi):
        procs = {side: counted(side, n) for side in sides}
        for side, proc in procs.items():
            counts[side].append(collected(proc))
    return {side: (c[1] - c[0]) / (hi - lo) for side, c in counts.items()}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--inner"]:
        inner(argv[1], int(argv[2]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian package 'valgrind')")
    lo, hi = 100, 400
    if "--n" in argv:
        lo, hi = (int(x) for x in argv[argv.index("--n") + 1].split(","))
    sides = tuple(a for a in argv if a in SIDES) or SIDES
    result = per_request(sides, lo, hi)
    for side, count in result.items():
        print(f"{side:9} {count / 1e6:7.3f} M instructions per POST")
    if len(result) == 2:
        print(f"ratio baseline/api {result['baseline'] / result['api']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])

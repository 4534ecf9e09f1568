"""The routing benchmark runs, and on a small run every key it reports moved had to move."""

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "routing_bench.py"


def test_the_benchmark_runs_and_ours_moves_only_what_must_move():
    result = subprocess.run(
        [sys.executable, str(BENCH), "--domains", "2000", "--only", "moves", "--only", "shares"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = result.stdout
    exact = out.split("keys that had to move to reach the loads")[1].split("weighted share")[0]
    rows = [line for line in exact.splitlines()[2:] if line.strip()]  # after the header
    assert len(rows) == 5
    for row in rows:
        ours = row.split()[-3]  # columns: ours, ketama, hash % N
        assert ours == "1.000", row
    assert "rendezvous (ours)" in out.split("weighted share error")[1]

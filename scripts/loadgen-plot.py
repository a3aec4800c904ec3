#!/usr/bin/env python3
"""Plots p50, p99 and p99.9 against offered load from one or more CSV files that
`loadgen run --csv FILE` wrote (one line per file, labelled by its `control` column), with
gnuplot (scripts/setup.sh --plots installs it).
Usage: loadgen-plot.py OUT.png A.csv [B.csv ...]
"""

import csv
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, inputs = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    plots = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, path in enumerate(inputs):
            rows = sorted(csv.DictReader(open(path)), key=lambda r: float(r["offered_per_s"]))
            if not rows:
                continue
            label = rows[0]["control"]
            data = Path(tmp) / f"{index}.dat"
            with open(data, "w") as f:
                for r in rows:
                    f.write(f"{r['offered_per_s']} {r['p50_us']} {r['p99_us']} {r['p999_us']}\n")
            for column, name, dash in [(2, "p50", 2), (3, "p99", 1), (4, "p99.9", 3)]:
                plots.append(
                    f"'{data}' using 1:{column} with linespoints dashtype {dash} "
                    f"linecolor {index + 1} title '{label} {name}'"
                )
        if not plots:
            sys.exit("no rows")
        script = (
            f"set terminal pngcairo size 900,560; set output '{out}';"
            "set logscale y; set xlabel 'offered load (requests/s)';"
            "set ylabel 'latency from planned send time (us)'; set key top left; set grid;"
            f"plot {', '.join(plots)}"
        )
        subprocess.run(["gnuplot", "-e", script], check=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

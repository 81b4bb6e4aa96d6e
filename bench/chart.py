"""Draw bench/run.py's results as a PNG bar chart.

    python bench/chart.py bench/out/results.json bench/out/chart.png

Left: throughput of each server as a multiple of the C server (medians of per-round
ratios). Right: resident memory per idle keep-alive connection.
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        data = json.load(f)
    results, titles = data["results"], data["titles"]
    throughput = [name for name in results if name != "idle"]
    labels = sorted({label for name in throughput for label in results[name]},
                    key=lambda label: (label != "C server", label != "cymongoose", label))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5),
                                      gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs, ys = [], []
        for j, name in enumerate(throughput):
            row = results[name].get(label)
            if row is None:
                continue
            xs.append(j + (i - (len(labels) - 1) / 2) * width)
            ys.append(1.0 if label == "C server" else (row["vs_c"] or 0.0))
        left.bar(xs, ys, width, label=label)
    left.set_xticks(range(len(throughput)))
    left.set_xticklabels([titles[name].split(" (")[0].split(",")[0] for name in throughput])
    left.set_ylabel("throughput vs the C server (median ratio)")
    left.axhline(1.0, color="grey", linewidth=0.8)
    left.legend(fontsize=8)
    if "idle" in results:
        idle = results["idle"]
        right.bar(list(idle), [row["value"] or 0 for row in idle.values()], color="tab:gray")
        right.set_ylabel("KB per idle connection")
        right.tick_params(axis="x", labelrotation=30, labelsize=8)
        right.set_title(f"idle memory ({data['settings']['idle_connections']:,} conns)", fontsize=9)
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

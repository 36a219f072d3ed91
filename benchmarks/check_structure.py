"""The structure study (Figure 3) again on a finished `hf-wlora reproduce` folder, with another number of instances.

A study's barriers scatter from instance to instance by about as much as their mean (`REPORT-small.md` gives the
standard errors), so whether two representations differ at one lambda depends on how many instances were fitted.
This reruns `studies.structure_study` on the folder's own base field with `--instances` instances (the first ones of
the data set, a superset of the report's), for the representations named, and prints cosine and barrier with the
barrier's standard error per lambda, and the first two representations' barrier difference instance by instance
(`report.paired_barrier_difference`). `--surface_points` sets the points per surface of the 3-D Chamfers (the
scale's `StudyBudget.structure_points` otherwise). The folder is only read: results go to `--save` if given.

Run: `python benchmarks/check_structure.py --output_dir /tmp/rep_final --modality 3d --instances 12
--representations mlora_asym mlora lora_asym lora [--surface_points 2048]`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hf_wlora.reproduction import ReproduceConfig, stages, studies
from hf_wlora.reproduction.config import SYSTEMS
from hf_wlora.reproduction.report import barrier_standard_error, paired_barrier_difference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True, help="a folder `hf-wlora reproduce` has run in")
    parser.add_argument("--scale", default="small", choices=["tiny", "small", "paper"])
    parser.add_argument("--modality", default="3d", choices=["2d", "3d"])
    parser.add_argument("--instances", type=int, default=12)
    parser.add_argument("--representations", nargs="+", default=["mlora_asym", "mlora"], choices=SYSTEMS)
    parser.add_argument(
        "--surface_points", type=int, help="3-D: points per surface of each Chamfer (default: the scale's budget)"
    )
    parser.add_argument("--save", type=Path, help="write the studies' results to this JSON file")
    args = parser.parse_args()
    config = ReproduceConfig(scale=args.scale, output_dir=args.output_dir, modalities=[args.modality])
    budget = config.budget(args.modality)
    budget.structure_instances = args.instances
    if args.surface_points is not None:
        budget.structure_points = args.surface_points
    field_dir = stages.base_field(budget, Path(args.output_dir) / args.modality, config.seed)  # finished: only read
    found = {}
    for name in args.representations:
        start = time.perf_counter()
        found[name] = studies.structure_study(budget, name, field_dir, config.seed)
        print(f"{name}: {found[name]['instances']} instances, {time.perf_counter() - start:.0f} s")
        for row in found[name]["rows"]:
            error = barrier_standard_error(row, found[name]["instances"])
            print(
                f"  λ={row['lambda']:g}: cosine {row['cosine_mean']:.3f}, barrier {row['barrier_mean']:.3g} ± "
                f"{error:.2g} (s.e.), endpoint score {row['endpoint_score_mean']:.3g}"
            )
    first, second = args.representations[:2] if len(args.representations) > 1 else (None, None)
    if first is not None:
        print(f"{first} minus {second}, instance by instance (the same instances and perturbation seeds):")
        for row, other in zip(found[first]["rows"], found[second]["rows"], strict=True):
            paired = paired_barrier_difference(row, other)
            if paired is not None:
                mean, error, count = paired
                print(f"  λ={row['lambda']:g}: barrier difference {mean:.3g} ± {error:.2g} (s.e., {count} instances)")
    if args.save:
        args.save.write_text(json.dumps(found, indent=2) + "\n")


if __name__ == "__main__":
    main()

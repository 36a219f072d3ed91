"""The 3-D generation study's metrics: the pruned exact EMD and the k-d tree Chamfer against the full matrices and
the former cdist and one-pair-at-a-time paths, and the two EMD solvers against each other, on the small scale's
geometry.

The small scale compares each generating system's 36 samples with the 32 built-in reference shapes (2,048-point
clouds; EMD on 512-point subsets). Without `--study_dir` the samples are the built-in shapes drawn again (other
instances and seeds: real geometry of the study's size); with a folder of `hf-wlora reproduce --scale small
--modality 3d` they are every trained system's generated meshes, decoded once (the decoding is timed apart: every
path shares it). Per path, the metrics of `systems` generators:

- before: every system computes its three Chamfer matrices with `pairwise_chamfer(method="cdist")` and its three
  EMD matrices one pair at a time (`batch_size=1`), including the references' own matrices (the code when issue 15
  was filed);
- full:   the references' matrices computed once, then every system its two others, all in full (k-d tree Chamfer;
  every pair's exact EMD, a batch's pairs on torch's threads: `prune=False`), as the ninth session found it;
- after:  `studies.reference_point_clouds` and `studies.point_cloud_figures` with the defaults: the exact EMD only
  for the pairs that can be some cloud's nearest neighbour (`prune=True`, `nearest_only=True`).

The three paths' MMD / COV / 1-NNA / copy fractions are compared (the script exits with 1 if any differs).
`--solvers` also times the exact assignment and the Sinkhorn solver on the same pairs and gives Sinkhorn's error
against the exact EMD.

Run: `python benchmarks/bench_metrics_3d.py [--systems 4] [--study_dir OUTPUT_DIR] [--solvers]`; the pruned path logs
how many assignment problems it solved per system.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
from pathlib import Path

import torch

from hf_wlora.data import open_data_source, sample_surface
from hf_wlora.metrics import (
    earth_movers_distance,
    exact_emd,
    normalize_point_clouds,
    point_cloud_distances,
    point_cloud_generation_metrics,
    sample_point_clouds,
)
from hf_wlora.reproduction import studies
from hf_wlora.reproduction.config import ReproduceConfig


def builtin_samples(budget, count: int, systems: int) -> list[torch.Tensor]:
    """Stand-ins for `systems` generators' samples: other built-in shapes, `count` each, at the study's size."""
    source = open_data_source(budget.data, {**budget.data_options, "num_instances": count * systems, "seed": 1})
    clouds = [
        torch.as_tensor(sample_surface(source[index], budget.point_cloud_points, seed=1000 + index))
        for index in range(len(source))
    ]
    return list(torch.stack(clouds).float().split(count))


def generated_samples(budget, study_dir: Path, count: int, seed: int) -> tuple[list[torch.Tensor], float]:
    """Every trained system's generated clouds, as the study samples them, and the seconds decoding took."""
    from hf_wlora.pipelines import WeightSpacePipeline

    start = time.perf_counter()
    found = []
    for pipeline_dir in sorted((study_dir / "3d" / "generators").glob("*/pipeline")):
        pipeline = WeightSpacePipeline.from_pretrained(pipeline_dir)
        pipeline.set_progress_bar_config(disable=True)
        weights = studies.sample_study_weights(budget, pipeline, count, seed)
        meshes = [mesh for mesh in pipeline.decode(weights, "mesh").meshes if mesh is not None]
        found.append(sample_point_clouds(meshes, budget.point_cloud_points, seed=seed))
    return found, time.perf_counter() - start


def metrics_before(samples: list[torch.Tensor], references: torch.Tensor, emd_points: int) -> list[dict]:
    subset = slice(0, emd_points)
    return [
        {
            "chamfer": point_cloud_generation_metrics(clouds, references, batch_size=16, distance="chamfer"),
            "emd": point_cloud_generation_metrics(
                clouds[:, subset], references[:, subset], distance="emd_exact", batch_size=1, prune=False
            ),
        }
        for clouds in samples
    ]


def metrics_full(samples: list[torch.Tensor], budget) -> list[dict]:
    """`studies.point_cloud_figures` with every pair of the exact EMD computed, the references' own pairs too."""
    shapes = studies.reference_clouds(budget)
    distances = {
        "chamfer": point_cloud_distances(shapes, distance="chamfer"),
        "emd": point_cloud_distances(shapes[:, : budget.emd_points], distance="emd_exact"),
    }
    references = studies.ReferencePointClouds(shapes, budget.emd_points, "emd_exact", distances)
    return [
        {
            name: point_cloud_generation_metrics(
                clouds[:, references.subset(name)],
                references.clouds[:, references.subset(name)],
                distance=distance,
                reference_distances=references.distances[name],
                prune=False,
            )
            for name, distance in (("chamfer", "chamfer"), ("emd", references.emd_distance))
        }
        for clouds in samples
    ]


def metrics_after(samples: list[torch.Tensor], budget) -> list[dict]:
    references = studies.reference_point_clouds(budget)
    return [studies.point_cloud_figures(clouds, references) for clouds in samples]


def chamfer_patch(method: str):
    """Route the study's Chamfer matrices through one method (the 'before' path is the cdist one)."""
    import hf_wlora.metrics.point_clouds as point_clouds

    original = point_clouds.pairwise_chamfer

    def patched(*args, **kwargs):
        return original(*args, **{**kwargs, "method": method})

    return point_clouds, original, patched


def solvers(references: torch.Tensor, pairs: int) -> dict[str, float]:
    """Exact and Sinkhorn EMD on the same pairs of normalised reference clouds at 512 and 2,048 points."""
    clouds = normalize_point_clouds(references)
    found = {}
    for points in (512, 2048):
        chosen = [(clouds[i, :points], clouds[(i + 1) % len(clouds), :points]) for i in range(pairs)]
        start = time.perf_counter()
        exact = torch.tensor([exact_emd(a, b) for a, b in chosen])
        found[f"exact_s_per_pair_{points}"] = (time.perf_counter() - start) / pairs
        start = time.perf_counter()
        sinkhorn = torch.tensor([earth_movers_distance(a, b) for a, b in chosen])
        found[f"sinkhorn_s_per_pair_{points}"] = (time.perf_counter() - start) / pairs
        found[f"sinkhorn_max_relative_error_{points}"] = float(((sinkhorn - exact) / exact).abs().max())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--systems", type=int, default=4, help="generators compared (without --study_dir)")
    parser.add_argument("--study_dir", type=Path, default=None)
    parser.add_argument("--solvers", action="store_true")
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("hf_wlora.metrics.point_clouds").setLevel(logging.INFO)
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    budget = ReproduceConfig(scale="small", output_dir="unused").budget("3d")
    references = studies.reference_clouds(budget)
    count = studies.generation_sample_count(budget, len(references))
    decode_seconds = 0.0
    if args.study_dir is None:
        samples = builtin_samples(budget, count, args.systems)
    else:
        samples, decode_seconds = generated_samples(budget, args.study_dir, count, 0)
    result: dict = {"systems": len(samples), "samples_per_system": [len(s) for s in samples]}

    module, original, patched = chamfer_patch("cdist")
    module.pairwise_chamfer = patched
    try:
        start = time.perf_counter()
        before = metrics_before(samples, references, budget.emd_points)
        result["before_s"] = time.perf_counter() - start
    finally:
        module.pairwise_chamfer = original
    paths = {"before": before}
    for name, measure in (("full", metrics_full), ("after", metrics_after)):
        start = time.perf_counter()
        paths[name] = measure(samples, budget)
        result[f"{name}_s"] = time.perf_counter() - start
    result["decode_s"] = decode_seconds
    for name in ("before", "full"):
        result[f"speedup_over_{name}"] = result[f"{name}_s"] / result["after_s"]
    result["study_speedup_over_before"] = (decode_seconds + result["before_s"]) / (decode_seconds + result["after_s"])
    print(
        f"{len(samples)} systems: metrics before {result['before_s']:.1f} s, full {result['full_s']:.1f} s, after "
        f"{result['after_s']:.1f} s ({result['speedup_over_before']:.2f}x and {result['speedup_over_full']:.2f}x); "
        f"with decoding ({decode_seconds:.1f} s) {result['study_speedup_over_before']:.2f}x over before"
    )
    print("| system | distance | MMD before / full / after | COV | 1-NNA | copies |")
    print("|---|---|---|---|---|---|")
    differ = False
    for index, found in enumerate(zip(*paths.values(), strict=True)):
        for name in ("chamfer", "emd"):
            values = [figures[name] for figures in found]
            cells = [" / ".join(f"{value[key]:.6g}" for value in values) for key in ("mmd", "cov", "1-nna")]
            cells.append(" / ".join(f"{value['copy_fraction']:.3f}" for value in values))
            print(f"| {index} | {name} | " + " | ".join(cells) + " |")
            # the pruned EMD must equal the full one exactly; the former cdist Chamfer agrees to float32 rounding
            keys = ("mmd", "cov", "1-nna", "copy_fraction")
            differ |= any(values[1][key] != values[2][key] for key in keys)
            differ |= any(abs(values[0][key] - values[2][key]) > 1e-5 * max(1.0, abs(values[2][key])) for key in keys)
    result["paths"] = paths
    if args.solvers:
        result["solvers"] = solvers(references, args.pairs)
        print(json.dumps(result["solvers"], indent=2))
    print(json.dumps({key: value for key, value in result.items() if key != "paths"}))
    if differ:
        raise SystemExit("the paths' metrics differ (above)")


if __name__ == "__main__":
    main()

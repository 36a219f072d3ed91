"""`REPORT.md`: the studies' tables and plots, the paper's published figures beside ours, budgets and wall times.

The paper's numbers come from other data (FFHQ, ShapeNet) at another budget, so the report compares orderings: for
every table it lists the representations from best to worst in our run and in the paper, with Kendall's tau over
the representations both have.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from . import paper
from .config import GENERATION_SYSTEMS, ReproduceConfig

PLOTS_DIR = "plots"
# What the 2-D generation study's results record as their features when no backbone was named.
PIXEL_FEATURES = "pixels"


def _number(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}g}"


def _count(value: int | None) -> str:
    """A parameter count in millions (thousands below a million)."""
    if value is None:
        return "n/a"
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def ordering(values: dict[str, float], higher_is_better: bool) -> list[str]:
    """Names from best to worst (names without a finite value are left out)."""
    finite = {name: value for name, value in values.items() if value is not None and math.isfinite(value)}
    return sorted(finite, key=lambda name: finite[name], reverse=higher_is_better)


def agreement(ours: dict[str, float], theirs: dict[str, float], higher_is_better: bool) -> str:
    """Our order, the paper's, and Kendall's tau over the names both have (1 = same order, -1 = reversed)."""
    from scipy.stats import kendalltau

    common = [name for name in ordering(ours, higher_is_better) if name in theirs]
    line = (
        f"ours: {' > '.join(ordering(ours, higher_is_better))}; paper: {' > '.join(ordering(theirs, higher_is_better))}"
    )
    if len(common) < 3:
        return line
    tau = kendalltau([ours[name] for name in common], [theirs[name] for name in common]).statistic
    if math.isnan(tau):  # one side gives every name the same value
        return f"{line}; Kendall's tau undefined (all tied)"
    return f"{line}; Kendall's tau over {len(common)}: {tau:+.2f}"


def score_cell(figures: dict[str, Any]) -> str:
    """Mean ± std of an encoding's scores, and how many instances had none (a shape whose mesh was empty)."""
    failed, total = figures.get("num_non_finite_scores", 0), figures["num_instances"]
    if failed == total:
        return f"no score for {failed} of {total}"
    cell = f"{_number(figures.get('score_mean'))} ± {_number(figures.get('score_std'), 2)}"
    return f"{cell} ({failed} of {total} without a score)" if failed else cell


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _reconstruction(results: dict[str, Any]) -> list[str]:
    lines = ["## 1. Reconstruction (Table 1)", ""]
    header = ["representation"]
    per_modality = {modality: found["reconstruction"]["representations"] for modality, found in results.items()}
    if "2d" in per_modality:
        header += ["2-D PSNR, ours (mean ± std)", "FFHQ PSNR, paper"]
    if "3d" in per_modality:
        header += ["3-D Chamfer, ours (mean ± std)", "ShapeNet Chamfer, paper (airplane / 10 classes)"]
    header += ["numbers per instance"]
    names = next(iter(per_modality.values())).keys()
    rows = []
    for name in names:
        row = [f"`{name}`"]
        if "2d" in per_modality:
            figures = per_modality["2d"][name]
            row += [score_cell(figures), _number(paper.RECONSTRUCTION_PSNR.get(name, math.nan))]
        if "3d" in per_modality:
            figures = per_modality["3d"][name]
            theirs = paper.RECONSTRUCTION_CHAMFER.get(name)  # none for our parameter-matched mlp
            row += [score_cell(figures), f"{theirs[0]} / {theirs[1]}" if theirs else "-"]
        sizes = [  # in the label's order, whatever order the modalities were given in
            f"{per_modality[modality][name].get('numbers_per_instance', 'n/a'):,}"
            for modality in ("2d", "3d")
            if modality in per_modality
        ]
        row.append(" / ".join(sizes) + (" (2-D / 3-D)" if len(sizes) > 1 else ""))
        rows.append(row)
    lines += [*_table(header, rows), ""]
    if "2d" in per_modality:
        ours = {name: per_modality["2d"][name].get("score_mean", math.nan) for name in names}
        lines.append(f"- 2-D PSNR (higher is better): {agreement(ours, paper.RECONSTRUCTION_PSNR, True)}.")
    if "3d" in per_modality:
        ours = {name: per_modality["3d"][name].get("score_mean", math.nan) for name in names}
        theirs = {name: value[1] for name, value in paper.RECONSTRUCTION_CHAMFER.items()}
        lines.append(f"- 3-D Chamfer (lower is better), paper's 10 classes: {agreement(ours, theirs, False)}.")
    return [*lines, ""]


def barrier_standard_error(row: dict[str, Any], instances: int) -> float | None:
    """The standard error of a structure row's mean barrier, from its spread over the paths that gave a value (the
    study stores the population standard deviation); None where fewer than two did."""
    measured = instances - row.get("paths_without_mesh", 0)
    std = row.get("barrier_std")
    if measured < 2 or std is None or not math.isfinite(std):
        return None
    return std / math.sqrt(measured - 1)


def structure_cell(row: dict[str, Any], instances: int) -> str:
    """`cosine / barrier ± s.e.` of a structure row, with how many of its paths gave a barrier when some did not (a
    3-D path without a mesh somewhere): the mean leaves those out, and they may be the representation's worst."""
    cell = (
        f"{_number(row['cosine_mean'], 3)} / {_number(row['barrier_mean'], 3)} ± "
        f"{_number(barrier_standard_error(row, instances), 2)}"
    )
    missing = row.get("paths_without_mesh", 0)
    return f"{cell} ({instances - missing} of {instances} paths)" if missing else cell


def paired_barrier_difference(first: dict[str, Any], second: dict[str, Any]) -> tuple[float, float, int] | None:
    """Mean and standard error of `first`'s barrier minus `second`'s, instance by instance, for two structure rows
    of the same instances (same data, lambda and seed), over the instances where both gave a value; with their count.
    Pairing removes what the instances share (some shapes are harder for every representation), so it can order two
    representations whose mean barriers are within their standard errors. None where fewer than two pairs remain or
    a row lacks per-instance barriers (results of an older version)."""
    if "barriers" not in first or "barriers" not in second or len(first["barriers"]) != len(second["barriers"]):
        return None
    if first.get("lambda") != second.get("lambda"):
        raise ValueError(
            f"Paired barriers need rows of one lambda, got {first.get('lambda')} and {second.get('lambda')}."
        )
    pairs = [
        (a, b) for a, b in zip(first["barriers"], second["barriers"], strict=True) if a is not None and b is not None
    ]
    if len(pairs) < 2:
        return None
    differences = [a - b for a, b in pairs]
    return statistics.fmean(differences), statistics.stdev(differences) / math.sqrt(len(pairs)), len(pairs)


def agreement_cell(found: dict[str, Any] | None) -> str:
    """A `class_agreement` result as "accuracy (lowest class: its fraction)", followed by "; n flat" when n of the
    samples were flatter than every training image (counted as not read); "n/a" when not measured (no classifier,
    or an unconditional transformer) and "no sample" when every sample was left out."""
    if found is None:
        return "n/a"
    if not found["samples"]:
        return "no sample"
    flat = f"; {found['unreadable']} flat" if found.get("unreadable") else ""
    return f"{found['accuracy']:.0%} ({found['lowest_class']}: {found['lowest']:.0%}){flat}"


def _structure(results: dict[str, Any], folder: Path) -> list[str]:
    lines = ["## 2. Weight-space structure (Figure 3)", "", f"Paper: {paper.STRUCTURE_FINDING}", ""]
    for modality, found in results.items():
        studies = found["structure"]
        if not studies:
            continue
        plot = _structure_plot(studies, folder / PLOTS_DIR / f"structure-{modality}.png", modality)
        first = next(iter(studies.values()))
        metric = (
            "PSNR (dB)" if first["metric"] == "psnr" else f"Chamfer on {first['surface_points']:,} points per surface"
        )
        lines += [
            f"### {modality.upper()}: {first['instances']} instances, {first['alphas']} points per path, barrier of "
            f"the {metric}",
            "",
            f"![structure {modality}]({PLOTS_DIR}/{plot.name})",
            "",
        ]
        lambdas = [row["lambda"] for row in first["rows"]]
        header = ["representation", *(f"λ={lam:g}: cosine / barrier ± s.e." for lam in lambdas)]
        rows = [
            [
                f"`{name}`",
                *(structure_cell(row, study["instances"]) for row in study["rows"]),
            ]
            for name, study in studies.items()
        ]
        lines += [
            *_table(header, rows),
            "",
            "± is the barrier's standard error over the instances: two representations whose mean barriers differ by "
            "less than about twice it are not told apart by this many instances.",
            "",
        ]
        lines += [
            "The cosine is over the entries each fit trains; with the asymmetric masks' frozen entries included "
            "(constants shared by both fits, which pull any two fits towards 1):",
            "",
            *_table(
                ["representation", *(f"λ={lam:g}" for lam in lambdas)],
                [
                    [f"`{name}`", *(_number(row.get("cosine_all_mean"), 3) for row in study["rows"])]
                    for name, study in studies.items()
                ],
            ),
            "",
        ]
        last = {name: study["rows"][-1]["cosine_mean"] for name, study in studies.items()}
        lines += [
            f"- Cosine similarity at λ={lambdas[-1]:g}, most similar first: {' > '.join(ordering(last, True))}.",
            "",
        ]
    return lines


def _structure_plot(studies: dict[str, Any], path: Path, modality: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, study in studies.items():
        lambdas = [row["lambda"] for row in study["rows"]]
        left.plot(lambdas, [row["cosine_mean"] for row in study["rows"]], marker="o", label=name)
        right.plot(lambdas, [row["barrier_mean"] for row in study["rows"]], marker="o", label=name)
    left.set(xlabel="λ", ylabel="cosine similarity of the two fits", title=f"{modality.upper()}: similarity")
    metric = "PSNR drop (dB)" if next(iter(studies.values()))["metric"] == "psnr" else "Chamfer rise"
    right.set(xlabel="λ", ylabel=f"barrier: {metric}", title=f"{modality.upper()}: linear-mode barrier")
    left.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def failed_meshes_note(studies: dict[str, Any]) -> list[str]:
    """A note on the systems whose samples did not all give a mesh: their metrics are over fewer samples, which lifts
    1-NNA's chance level above 0.5 (two interchangeable sets of S and R clouds: (S(S-1) + R(R-1)) / ((S+R)(S+R-1))),
    can only lower COV and raise MMD; the note gives each one's chance level so the ranking can be read."""
    short = []
    for name, study in studies.items():
        meshes, references = study.get("num_meshes", 0), study.get("num_references", 0)
        if meshes < study["num_samples"]:
            together = meshes + references
            chance = (meshes * (meshes - 1) + references * (references - 1)) / max(1, together * (together - 1))
            short.append(f"`{name}` {meshes} of {study['num_samples']} (1-NNA's chance level {chance:.2f})")
    if not short:
        return []
    return [
        "- Measured over the samples that gave a mesh: " + ", ".join(short) + ". Fewer samples lift 1-NNA's chance "
        "level above 0.5, lower COV and raise MMD, so these systems rank lower than their meshes alone would."
    ]


def _generation(results: dict[str, Any]) -> list[str]:
    lines = ["## 3. Generation", ""]
    for modality, found in results.items():
        studies = found["generation"]
        if not studies:
            continue
        first = next(iter(studies.values()))
        lines += [
            f"### {modality.upper()}: {first['num_samples']} samples per system against the {first['num_references']} "
            "training instances",
            "",
        ]
        if modality == "2d":
            header = [
                "system",
                "FD, learned",
                "FD",
                "MMD-G",
                "MMD-P",
                "copies",
                "nearest-training PSNR",
                "read as their class (lowest)",
                "the same, copies left out",
                "paper FFHQ FD / MMD-G / MMD-P",
                "DiT loss",
                "DiT parameters",
            ]
            rows = [
                [
                    "HyperDiffusion (`mlp`)" if name == "mlp" else f"`{name}`",
                    _number(study.get("learned_features", {}).get("fd")),
                    _number(study.get("fd")),
                    _number(study.get("mmd_gaussian")),
                    _number(study.get("mmd_polynomial")),
                    _number(study.get("memorization", {}).get("copy_fraction"), 2),
                    _number(study.get("memorization", {}).get("nearest_training_psnr_mean"), 3),
                    agreement_cell(study.get("class_agreement")),
                    agreement_cell(study.get("class_agreement_without_copies")),
                    " / ".join(str(value) for value in paper.GENERATION_FFHQ.get(name, ())) or "-",
                    _number(study["generator"]["eval_loss"]),
                    _count(study["generator"].get("num_parameters")),
                ]
                for name, study in studies.items()
            ]
            lines += [*_table(header, rows), ""]
            theirs = {name: value[0] for name, value in paper.GENERATION_FFHQ.items()}
            learned = {name: study.get("learned_features", {}).get("fd", math.nan) for name, study in studies.items()}
            lines.append(f"- FD on learned features (lower is better): {agreement(learned, theirs, False)}.")
            ours = {name: study.get("fd", math.nan) for name, study in studies.items()}
            lines.append(f"- FD (lower is better): {agreement(ours, theirs, False)}.")
            lines.append(
                "- Learned features: the penultimate activations of a small CNN classifier (an autoencoder's code "
                "for unlabelled data) trained on the training instances (`LearnedImageFeatures`); copies: the "
                "fraction of samples at least twice as close to a training image as its nearest other training "
                "image (`copy_fraction`, pixels); nearest-training PSNR: each sample against its closest training "
                "image, averaged; read as their class: the fraction of the class-conditional samples that the same "
                "classifier assigns to the class they were drawn for, with the class it reads least often "
                "(`class_agreement`), over all samples and over those that are not copies; a sample with less "
                'contrast than every training image ("flat", `flat_images`) counts as not read, whatever the '
                "classifier says."
            )
            features = first.get("image_features", PIXEL_FEATURES)
            lines.append(
                "- Features: pixels (`PixelFeatures`, 32x32), comparable across runs of this library, not with the "
                "paper's Inception features."
                if features == PIXEL_FEATURES
                else f"- Features: the backbone at `{features}`."
            )
        else:
            header = [
                "system",
                "meshes",
                "MMD-CD",
                "COV-CD",
                "1-NNA-CD",
                "copies (CD)",
                "MMD-EMD",
                "COV-EMD",
                "1-NNA-EMD",
                "DiT loss",
                "DiT parameters",
            ]
            rows = []
            for name, study in studies.items():
                chamfer, emd = study.get("chamfer", {}), study.get("emd", {})
                rows.append(
                    [
                        "HyperDiffusion (`mlp`)" if name == "mlp" else f"`{name}`",
                        f"{study.get('num_meshes', 0)} / {study['num_samples']}",
                        *(_number(chamfer.get(key)) for key in ("mmd", "cov", "1-nna")),
                        _number(chamfer.get("copy_fraction"), 2),
                        *(_number(emd.get(key)) for key in ("mmd", "cov", "1-nna")),
                        _number(study["generator"]["eval_loss"]),
                        _count(study["generator"].get("num_parameters")),
                    ]
                )
            lines += [*_table(header, rows), ""]
            points = next((study["emd_points"] for study in studies.values() if "emd_points" in study), None)
            if points is not None:
                solver = {"emd": "Sinkhorn, within 0.5%", "emd_exact": "exact"}.get(first.get("emd_distance"), "")
                lines.append(
                    f"- Clouds normalised per cloud; Chamfer on all points, EMD on {points}-point subsets"
                    + (f" ({solver})." if solver else ".")
                )
            lines += failed_meshes_note(studies)
            ours = {name: study.get("chamfer", {}).get("1-nna", math.nan) for name, study in studies.items()}
            lines.append(
                f"- 1-NNA over Chamfer (closer to 0.5 is better; the paper compares with HyperDiffusion, with no "
                f"published table): {' > '.join(ordering({k: -abs(v - 0.5) for k, v in ours.items()}, True))}."
            )
        lines += [""] + [
            f"![{modality} samples of {name}]({PLOTS_DIR}/samples-{modality}-{name}.png) `{name}`" for name in studies
        ]
        lines.append("")
    return lines


def _discrimination(results: dict[str, Any], folder: Path) -> list[str]:
    lines = ["## 4. Discrimination (Table 4) and t-SNE (Figure 5)", ""]
    header = ["representation"]
    for modality in results:
        header += [f"{modality.upper()} ARI / 1-NN / logistic regression (%)"]
    header += ["paper, ShapeNet 10 classes"]
    names = next(iter(results.values()))["discrimination"].keys()
    rows = []
    for name in names:
        row = [f"`{name}`"]
        for found in results.values():
            study = found["discrimination"][name]
            keys = ("ari", "nn_accuracy", "logreg_accuracy")
            row.append("skipped" if "skipped" in study else " / ".join(_number(100 * study[key], 3) for key in keys))
        row.append(" / ".join(str(value) for value in paper.DISCRIMINATION_SHAPENET.get(name, ())) or "-")
        rows.append(row)
    lines += [*_table(header, rows), ""]
    for modality, found in results.items():
        studied = {name: study for name, study in found["discrimination"].items() if "skipped" not in study}
        if len(studied) < len(found["discrimination"]):
            reason = next(study["skipped"] for study in found["discrimination"].values() if "skipped" in study)
            lines.append(f"- {modality.upper()}: skipped for {len(found['discrimination']) - len(studied)}: {reason}.")
        if not studied:
            continue
        ours = {name: study["logreg_accuracy"] for name, study in studied.items()}
        theirs = {name: value[2] for name, value in paper.DISCRIMINATION_SHAPENET.items()}
        lines.append(f"- {modality.upper()} logistic-regression accuracy: {agreement(ours, theirs, True)}.")
        plot = _tsne_plot(studied, folder / PLOTS_DIR / f"tsne-{modality}.png", modality)
        lines += ["", f"![t-SNE {modality}]({PLOTS_DIR}/{plot.name})", ""]
    return lines


def _tsne_plot(studies: dict[str, Any], path: Path, modality: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import scatter_by_class

    path.parent.mkdir(parents=True, exist_ok=True)
    columns = min(3, len(studies))
    rows = math.ceil(len(studies) / columns)
    figure, axes = plt.subplots(
        rows, columns, figsize=(4 * columns + 1.5, 4 * rows), squeeze=False, layout="constrained"
    )
    for axis in axes.flat:
        axis.set_axis_off()
    legend = None
    for axis, (name, study) in zip(axes.flat, studies.items(), strict=False):
        if study["tsne"] is None:
            axis.set_title(f"{modality.upper()} {name}: no embedding ({study['tsne_error']})", fontsize=7, wrap=True)
            continue
        scatter_by_class(axis, np.asarray(study["tsne"]), np.asarray(study["labels"]), study.get("class_names"))
        axis.set_title(f"{modality.upper()} {name}: ARI {100 * study['ari']:.0f}")
        legend = legend or axis.get_legend_handles_labels()  # every study has the same classes
    if legend is not None:
        figure.legend(*legend, loc="outside right upper", markerscale=2.0, frameon=False)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_report(folder: Path, config: ReproduceConfig, results: dict[str, Any], seconds: float) -> Path:
    """Write `folder/REPORT.md` (and its plots) from the studies' `results` per modality; returns its path."""
    budgets = {modality: config.budget(modality) for modality in results}
    total = sum(value for found in results.values() for value in found["seconds"].values())
    lines = [
        "# Reproducing the paper's studies with hf_wlora",
        "",
        f"Scale `{config.scale}`, seed {config.seed}, {date.today().isoformat()}, on {platform.machine()} / "
        f"{platform.system()} ({_machine_text()}). Wall time of all parts: **{_duration(total)}** "
        + (
            f"(one run, {_duration(seconds)} in all)."
            if seconds >= total
            else f"(each part as measured by the run that computed it; this invocation took {_duration(seconds)}, "
            "reusing what earlier runs of the folder finished)."
        ),
        "",
        "| modality | data | stage 1 | stage 2 (each representation) | structure | generation |",
        "|---|---|---|---|---|---|",
    ]
    for modality, budget in budgets.items():
        stages = budget.train_field.get("stages", [])
        generation = budget.generation
        lines.append(
            f"| {modality.upper()} | `{budget.data}` {json.dumps(budget.data_options)} | "
            f"{sum(stage['steps'] for stage in stages)} steps | {budget.encode.get('steps', 300)} steps, "
            f"r = {budget.encode.get('rank', 4)} | {budget.structure_instances} instances, λ in "
            f"{budget.structure_lambdas} | {generation.get('steps')} steps of batch {generation.get('batch_size')}, "
            f"{[name for name in GENERATION_SYSTEMS if name in config.representations]} |"
        )
    lines += ["", "Wall time of each part, as measured by the run that computed it (details in the results files):", ""]
    # each column sums the parts whose names start with its prefixes ("stage 3: train" is the generators' training)
    columns = (
        ("stage 1",),
        ("stage 2",),
        ("reconstruction",),
        ("structure",),
        ("stage 3", "generation"),
        ("discrimination",),
    )
    timing_rows = []
    for modality, found in results.items():
        totals = [sum(v for k, v in found["seconds"].items() if k.startswith(prefixes)) for prefixes in columns]
        timing_rows.append([modality.upper(), *(_duration(total) for total in totals)])
    header = [
        "modality",
        "stage 1 (field)",
        "stage 2 (encode all)",
        "reconstruction",
        "structure",
        "generation (train + sample + metrics)",
        "discrimination",
    ]
    lines += [*_table(header, timing_rows), ""]
    lines += [
        "The paper's figures come from FFHQ-128 and ShapeNet at the paper's budget, ours from the data and budget "
        "above: compare how the representations are ordered, not the values. Every study's raw results are in "
        "`*/results/*.json`.",
        "",
    ]
    lines += _reconstruction(results)
    lines += _structure(results, folder)
    lines += _generation(results)
    lines += _discrimination(results, folder)
    path = folder / "REPORT.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    return path


def _machine_text() -> str:
    import os

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


__all__ = ["agreement", "ordering", "write_report"]

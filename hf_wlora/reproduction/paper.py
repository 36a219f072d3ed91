"""The paper's published figures (Yang et al., arXiv 2512.01759), shown beside ours in the report for orientation.

Their data (FFHQ-128, ShapeNet) and budgets differ from the built-in data and the small scale, so the numbers are not
comparable one to one: what the report compares is how the six representations are *ordered*.
"""

from __future__ import annotations

# Table 1: FFHQ-128 PSNR (dB, higher is better) and ShapeNet Chamfer distance (airplane / 10 classes, lower is
# better; the paper's unit, without its scale factor).
RECONSTRUCTION_PSNR = {
    "mlp": 35.11,
    "mlp_asym": 33.28,
    "lora": 35.69,
    "lora_asym": 24.63,
    "mlora": 35.65,
    "mlora_asym": 36.91,
}
RECONSTRUCTION_CHAMFER = {
    "mlp": (2.57, 3.78),
    "mlp_asym": (2.64, 4.00),
    "lora": (2.44, 3.39),
    "lora_asym": (2.46, 3.44),
    "mlora": (2.45, 3.49),
    "mlora_asym": (2.41, 3.35),
}

# Generation on FFHQ (lower is better): Fréchet distance, MMD with Gaussian kernel, MMD with polynomial kernel.
# "mlp" stands for HyperDiffusion (full MLP weights, one token per weight tensor).
GENERATION_FFHQ = {
    "mlp": (0.241, 0.158, 1.887),
    "lora_asym": (0.269, 0.157, 1.877),
    "mlora": (0.100, 0.056, 0.674),
    "mlora_asym": (0.073, 0.039, 0.467),
}

# Table 4: ShapeNet 10 classes, k-means ARI / 1-NN accuracy / logistic-regression accuracy (percent).
DISCRIMINATION_SHAPENET = {
    "mlp": (39.3, 50.0, 78.1),
    "lora": (56.3, 75.2, 86.1),
    "mlora": (67.1, 85.1, 90.0),
    "mlora_asym": (56.5, 80.8, 84.5),
}

# §4.2: the paper's qualitative finding on structure (no table is published).
STRUCTURE_FINDING = (
    "mlora_asym stays in one linear mode (high cosine similarity and no barrier) as lambda grows; the other "
    "representations' fits drift apart and show barriers."
)

# The findings the studies test (the paper's findings).
FINDINGS = (
    "multiplicative beats additive everywhere",
    "masking only helps the multiplicative form",
    "a linear weight-space mode goes with better generation",
    "plain mlora is best for discrimination, mlora_asym for generation",
)

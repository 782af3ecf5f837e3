"""EfficientNet (arXiv 1905.11946) B0-B7 with compound scaling, and EfficientNet-Lite0-4."""
from __future__ import annotations

from edgeopt.models._builder import ArchSpec, build
from edgeopt.models._registry import register_model

EFFICIENTNET_B0 = ArchSpec(
    name="efficientnet",
    stem="cn_k3_s2_c32",
    stages=(
        "ir_r1_k3_s1_e1_c16_se0.25",
        "ir_r2_k3_s2_e6_c24_se0.25",
        "ir_r2_k5_s2_e6_c40_se0.25",
        "ir_r3_k3_s2_e6_c80_se0.25",
        "ir_r3_k5_s1_e6_c112_se0.25",
        "ir_r4_k5_s2_e6_c192_se0.25",
        "ir_r1_k3_s1_e6_c320_se0.25",
    ),
    head_channels=1280,
    activation="swish",
)

# Lite: no squeeze-excite, ReLU6, stem/head and the first/last stage's repeats fixed (quantization friendly).
EFFICIENTNET_LITE0 = ArchSpec(
    name="efficientnet_lite",
    stem=EFFICIENTNET_B0.stem,
    stages=tuple(s.replace("_se0.25", "") for s in EFFICIENTNET_B0.stages),
    head_channels=1280,
    activation="relu6",
    scale_stem=False,
    scale_head=lambda width: False,
    scale_end_repeats=False,
)

# (width, depth, resolution, dropout) from the paper / reference implementation.
B_VARIANTS = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
    3: (1.2, 1.4, 300, 0.3),
    4: (1.4, 1.8, 380, 0.4),
    5: (1.6, 2.2, 456, 0.4),
    6: (1.8, 2.6, 528, 0.5),
    7: (2.0, 3.1, 600, 0.5),
}
LITE_VARIANTS = {0: (1.0, 1.0, 224, 0.2), 1: (1.0, 1.1, 240, 0.2), 2: (1.1, 1.2, 260, 0.3), 3: (1.2, 1.4, 280, 0.3), 4: (1.4, 1.8, 300, 0.3)}
# Compound scaling constants of the paper: depth alpha, width beta, resolution gamma, alpha * beta^2 * gamma^2 ~ 2.
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15


def compound_coefficients(phi: float, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> tuple[float, float, int]:
    """(width, depth, resolution) for compound coefficient ``phi``: beta^phi, alpha^phi, 224 * gamma^phi."""
    return beta**phi, alpha**phi, int(round(224 * gamma**phi))


@register_model("efficientnet", default_size=224)
def efficientnet(*, phi: float | None = None, width: float = 1.0, depth: float = 1.0, dropout: float = 0.2, drop_connect_rate: float = 0.0, **kw):
    """EfficientNet from B0 with explicit ``width``/``depth`` or compound coefficient ``phi``
    (resolution comes from ``input_shape``; see ``compound_coefficients``)."""
    if phi is not None:
        width, depth, _ = compound_coefficients(phi)
    return build(EFFICIENTNET_B0, width=width, depth=depth, dropout=dropout, drop_connect_rate=drop_connect_rate, **kw)


def _register_b(index: int):
    width, depth, size, dropout = B_VARIANTS[index]

    def variant(*, dropout: float = dropout, drop_connect_rate: float = 0.0, **kw):
        return build(EFFICIENTNET_B0, width=width, depth=depth, dropout=dropout, drop_connect_rate=drop_connect_rate, **kw)

    variant.__doc__ = f"EfficientNet-B{index}: width {width}, depth {depth}, {size}x{size} input."
    register_model(f"efficientnet_b{index}", default_size=size)(variant)


def _register_lite(index: int):
    width, depth, size, dropout = LITE_VARIANTS[index]

    def variant(*, dropout: float = dropout, **kw):
        return build(EFFICIENTNET_LITE0, width=width, depth=depth, dropout=dropout, **kw)

    variant.__doc__ = f"EfficientNet-Lite{index} (no SE, ReLU6, fixed stem/head): width {width}, depth {depth}, {size}x{size} input."
    register_model(f"efficientnet_lite{index}", default_size=size)(variant)


for _i in B_VARIANTS:
    _register_b(_i)
for _i in LITE_VARIANTS:
    _register_lite(_i)


@register_model("efficientnet_tiny", default_size=32)
def efficientnet_tiny(**kw):
    """EfficientNet-B0 at width 0.25 and one block per stage: the family's tiny variant for tests."""
    return build(EFFICIENTNET_B0, width=0.25, depth=0.25, **kw)


@register_model("efficientnet_lite_tiny", default_size=32)
def efficientnet_lite_tiny(**kw):
    """EfficientNet-Lite at width 0.25 and one block per middle stage: the Lite tiny variant for tests."""
    return build(EFFICIENTNET_LITE0, width=0.25, depth=0.25, **kw)

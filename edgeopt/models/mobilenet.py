"""MobileNetV1 (arXiv 1704.04861) and MobileNetV2 (arXiv 1801.04381) as architecture tables."""
from __future__ import annotations

from edgeopt.models._builder import ArchSpec, build, make_divisible
from edgeopt.models._registry import register_model

MOBILENET_V1 = ArchSpec(
    name="mobilenet_v1",
    stem="cn_k3_s2_c32",
    stages=(
        "ds_r1_k3_s1_c64",
        "ds_r1_k3_s2_c128",
        "ds_r1_k3_s1_c128",
        "ds_r1_k3_s2_c256",
        "ds_r1_k3_s1_c256",
        "ds_r1_k3_s2_c512",
        "ds_r5_k3_s1_c512",
        "ds_r1_k3_s2_c1024",
        "ds_r1_k3_s1_c1024",
    ),
    head_channels=None,
    activation="relu6",
    round_channels=lambda v: int(v),  # Keras and the paper truncate: int(filters * alpha)
)

MOBILENET_V2 = ArchSpec(
    name="mobilenet_v2",
    stem="cn_k3_s2_c32",
    stages=(
        "ir_r1_k3_s1_e1_c16",
        "ir_r2_k3_s2_e6_c24",
        "ir_r3_k3_s2_e6_c32",
        "ir_r4_k3_s2_e6_c64",
        "ir_r3_k3_s1_e6_c96",
        "ir_r3_k3_s2_e6_c160",
        "ir_r1_k3_s1_e6_c320",
    ),
    head_channels=1280,
    activation="relu6",
    round_channels=lambda v: make_divisible(int(v), 8),
    scale_head=lambda width: width > 1.0,  # the paper keeps 1280 for width <= 1
)


@register_model("mobilenet_v1", default_size=224)
def mobilenet_v1(*, alpha: float = 1.0, depth_multiplier: int = 1, dropout: float = 1e-3, **kw):
    """MobileNetV1 with width multiplier ``alpha`` and depthwise ``depth_multiplier``."""
    return build(MOBILENET_V1, width=alpha, depth_multiplier=depth_multiplier, dropout=dropout, **kw)


@register_model("mobilenet_v1_tiny", default_size=32)
def mobilenet_v1_tiny(**kw):
    """MobileNetV1 at alpha 0.25: the family's tiny variant for tests."""
    return mobilenet_v1(alpha=0.25, **kw)


@register_model("mobilenet_v2", default_size=224)
def mobilenet_v2(*, alpha: float = 1.0, dropout: float = 0.0, **kw):
    """MobileNetV2 with width multiplier ``alpha``."""
    return build(MOBILENET_V2, width=alpha, dropout=dropout, **kw)


@register_model("mobilenet_v2_tiny", default_size=32)
def mobilenet_v2_tiny(**kw):
    """MobileNetV2 at alpha 0.35 with one or two blocks per stage: the family's tiny variant for tests."""
    return build(MOBILENET_V2, width=0.35, depth=0.34, **kw)

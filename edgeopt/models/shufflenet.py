"""ShuffleNet v1 (arXiv 1707.01083): grouped 1x1 convolutions and channel shuffle, as a table per group count."""
from __future__ import annotations

from edgeopt.models._builder import ArchSpec, build, make_divisible
from edgeopt.models._registry import KNOB_RULES, register_model

# Table 1 of the paper: output channels of stages 2-4 at 1x for each number of groups.
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}
STAGE_REPEATS = (4, 8, 4)
SCALES = (0.25, 0.5, 1.0, 1.5, 2.0)
KNOB_RULES.update(
    groups=(lambda v: v in STAGE_CHANNELS, f"one of {', '.join(map(str, STAGE_CHANNELS))} (ShuffleNet v1's group counts)"),
    scale=(lambda v: v in SCALES, f"one of {', '.join(map(str, SCALES))} (ShuffleNet v1's widths)"),
)


def shufflenet_v1_spec(groups: int) -> ArchSpec:
    """The architecture table for ``groups``; channels stay divisible by the groups at every scale."""
    if groups not in STAGE_CHANNELS:
        raise ValueError(f"ShuffleNet v1 groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
    stages = tuple(f"sh_r{r}_s2_c{c}_g{groups}" for r, c in zip(STAGE_REPEATS, STAGE_CHANNELS[groups]))
    return ArchSpec(
        name=f"shufflenet_v1_g{groups}",
        stem="cn_k3_s2_c24",
        stages=stages,
        head_channels=None,
        activation="relu",
        # bottleneck = channels / 4 must split into `groups`, so stage channels are multiples of 4 * groups
        round_channels=lambda v: make_divisible(v, 4 * groups),
        round_stem=lambda v: make_divisible(v, groups),
        stem_pool=True,
    )


@register_model("shufflenet_v1", default_size=224)
def shufflenet_v1(*, groups: int = 3, scale: float = 1.0, dropout: float = 0.0, **kw):
    """ShuffleNet v1 with ``groups`` in 1, 2, 3, 4, 8 and width ``scale`` in 0.25, 0.5, 1, 1.5, 2."""
    if scale not in SCALES:
        raise ValueError(f"ShuffleNet v1 scale must be one of {SCALES}, got {scale}")
    return build(shufflenet_v1_spec(groups), width=scale, dropout=dropout, **kw)


@register_model("shufflenet_v1_tiny", default_size=32)
def shufflenet_v1_tiny(**kw):
    """ShuffleNet v1 0.25x with 3 groups and one unit per stage: the family's tiny variant for tests."""
    return build(shufflenet_v1_spec(3), width=0.25, depth=0.25, **kw)

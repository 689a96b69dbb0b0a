"""Component decomposition of the ViT image encoder: direct effects, mean ablation, TextSpan, segmentation."""

from cliplens.core.decomposition.ablation import (
    Ablation,
    HeadAblationResult,
    ablate,
    ablated_accuracy,
    mean_decomposition,
    rank_heads_by_ablation,
)
from cliplens.core.decomposition.decompose import (
    PER_HEAD,
    Decomposition,
    decompose,
    direct_effects,
    image_batches,
)
from cliplens.core.decomposition.segmentation import (
    PastedObjects,
    SegmentationScores,
    class_heatmaps,
    evaluate_segmentation,
    heatmap_masks,
    paste_objects,
    score_heatmaps,
)
from cliplens.core.decomposition.textspan import (
    DESCRIPTIONS_FILE,
    TextSpanPick,
    TextSpanResult,
    head_contributions,
    head_text_span,
    load_descriptions,
    text_span,
)

__all__ = [
    "DESCRIPTIONS_FILE",
    "PER_HEAD",
    "PER_TOKEN",
    "Ablation",
    "Decomposition",
    "HeadAblationResult",
    "PastedObjects",
    "SegmentationScores",
    "TextSpanPick",
    "TextSpanResult",
    "ablate",
    "ablated_accuracy",
    "class_heatmaps",
    "decompose",
    "direct_effects",
    "evaluate_segmentation",
    "head_contributions",
    "head_text_span",
    "heatmap_masks",
    "image_batches",
    "load_descriptions",
    "mean_decomposition",
    "paste_objects",
    "rank_heads_by_ablation",
    "score_heatmaps",
    "text_span",
]

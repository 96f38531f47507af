"""Built-in, offline, deterministic datasets (the default of every env)."""

from perception_env.data.synthetic.base import SyntheticDataset
from perception_env.data.synthetic.difficulty import EASY, HARD, MEDIUM, PRESETS, Difficulty, get_difficulty
from perception_env.data.synthetic.referring import ShapesGrounding
from perception_env.data.synthetic.shape_tasks import ShapesCounting, ShapesDetection
from perception_env.data.synthetic.text_render import RenderedTextOCR

__all__ = [
    "EASY",
    "HARD",
    "MEDIUM",
    "PRESETS",
    "Difficulty",
    "RenderedTextOCR",
    "ShapesCounting",
    "ShapesDetection",
    "ShapesGrounding",
    "SyntheticDataset",
    "get_difficulty",
]

"""perception_env: visual perception tasks as one-step Gymnasium environments.

``import perception_env`` registers the environments below; then
``gym.make("PerceptionR1/Detection-v0")`` works offline on built-in data.
No torch is imported anywhere in this package.
"""

from gymnasium.envs.registration import register

from perception_env.core import PerceptionEnv
from perception_env.data.sample import Sample
from perception_env.frames import CoordinateFrame, smart_resize
from perception_env.tasks.counting import CountingEnv
from perception_env.tasks.detection import DetectionEnv
from perception_env.tasks.grounding import GroundingEnv
from perception_env.tasks.ocr import OCREnv

__version__ = "0.1.0"

# id -> entry point. Variants of one task differ only by kwargs passed to gym.make.
ENV_IDS = {
    "PerceptionR1/Detection-v0": "perception_env.tasks.detection:DetectionEnv",
    "PerceptionR1/Counting-v0": "perception_env.tasks.counting:CountingEnv",
    "PerceptionR1/Grounding-v0": "perception_env.tasks.grounding:GroundingEnv",
    "PerceptionR1/OCR-v0": "perception_env.tasks.ocr:OCREnv",
}

for _env_id, _entry_point in ENV_IDS.items():
    # One step per episode: no TimeLimit needed; the env itself terminates.
    register(id=_env_id, entry_point=_entry_point, disable_env_checker=False)

__all__ = [
    "ENV_IDS",
    "CoordinateFrame",
    "CountingEnv",
    "DetectionEnv",
    "GroundingEnv",
    "OCREnv",
    "PerceptionEnv",
    "Sample",
    "smart_resize",
]

"""perception_env: visual perception tasks as one-step Gymnasium environments.

``import perception_env`` registers the environments below; then
``gym.make("PerceptionR1/Detection-v0")`` works offline on built-in data.
No torch is imported anywhere in this package.
"""

from perception_env.core import PerceptionEnv, Scored
from perception_env.data.sample import Sample
from perception_env.frames import CoordinateFrame, smart_resize
from perception_env.tasks import ENV_IDS, TASKS, get_task, register_task
from perception_env.tasks.counting import CountingEnv
from perception_env.tasks.detection import DetectionEnv
from perception_env.tasks.grounding import GroundingEnv
from perception_env.tasks.ocr import OCREnv

__version__ = "0.1.0"

__all__ = [
    "ENV_IDS",
    "TASKS",
    "CoordinateFrame",
    "CountingEnv",
    "DetectionEnv",
    "GroundingEnv",
    "OCREnv",
    "PerceptionEnv",
    "Sample",
    "Scored",
    "get_task",
    "register_task",
    "smart_resize",
]

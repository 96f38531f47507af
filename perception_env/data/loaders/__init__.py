"""Loaders for real datasets in local files: COCO, RefCOCO/+/g, PixMo-Count, PageOCR, JSONL, Hugging Face datasets."""

from perception_env.data.loaders.coco import CocoDetection
from perception_env.data.loaders.errors import DatasetFormatError, DroppedEntriesWarning
from perception_env.data.loaders.hf import HfDataset
from perception_env.data.loaders.jsonl import SCHEMAS, JsonlDataset, RecordSchema
from perception_env.data.loaders.page_ocr import PageOcr
from perception_env.data.loaders.pixmo_count import PixmoCount
from perception_env.data.loaders.refcoco import RefCocoGrounding, load_refs

__all__ = [
    "CocoDetection",
    "DatasetFormatError",
    "DroppedEntriesWarning",
    "HfDataset",
    "JsonlDataset",
    "PageOcr",
    "PixmoCount",
    "RecordSchema",
    "RefCocoGrounding",
    "SCHEMAS",
    "load_refs",
]

from .image_text import ImageTextDataset
from .toy_corpus import generate_toy_corpus
from .transforms import PackImageTextInputs, TokenizeText
from .webdataset import WebDatasetEpochHook, WebImageTextDataset
from .zero_shot import ZeroShotClsDataset

__all__ = [
    'ImageTextDataset', 'WebImageTextDataset', 'WebDatasetEpochHook', 'ZeroShotClsDataset',
    'TokenizeText', 'PackImageTextInputs', 'generate_toy_corpus'
]

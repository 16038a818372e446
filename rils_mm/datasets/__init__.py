from .benchmarks import KarpathyRetrievalDataset, TokenizeCaptions, ZeroShotBenchmarkDataset
from .draft_decode import DecodeRandomResizedCrop
from .image_text import ImageTextDataset
from .transforms import PackImageTextInputs, TokenizeText
from .webdataset import WebImageTextDataset
from .zero_shot import ZeroShotClsDataset

__all__ = [
    'ImageTextDataset', 'WebImageTextDataset', 'ZeroShotClsDataset', 'TokenizeText',
    'PackImageTextInputs', 'ZeroShotBenchmarkDataset', 'KarpathyRetrievalDataset',
    'TokenizeCaptions', 'DecodeRandomResizedCrop'
]

"""Readers for the downstream evaluation sets, in the layouts they ship in.

* :class:`ZeroShotBenchmarkDataset` - zero-shot classification (paper
  Tables 6 and 8) from an ImageFolder tree, a torchvision data set's own
  layout (read by torchvision's class, ``download=False``), WebDataset shards
  as clip-benchmark writes them, or CUB-200-2011's text files.
* :class:`KarpathyRetrievalDataset` - image-text retrieval (Table 7) from the
  Karpathy split JSON of COCO / Flickr30K (5 captions per image).

Every sample is handed to the pipeline already decoded (``img``: BGR
``uint8``, like ``LoadImageFromFile(imdecode_backend='pillow')``), so one test
pipeline (resize, crop, pack) serves every source; the pipelines of these
data sets therefore start **without** ``LoadImageFromFile``.
"""
from .classification import ZeroShotBenchmarkDataset
from .layouts import IMG_EXTENSIONS, WDS_IMAGE_EXTS
from .retrieval import KarpathyRetrievalDataset, TokenizeCaptions

__all__ = [
    'ZeroShotBenchmarkDataset', 'KarpathyRetrievalDataset', 'TokenizeCaptions',
    'IMG_EXTENSIONS', 'WDS_IMAGE_EXTS'
]

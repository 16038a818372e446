"""The two zero-shot segmentation sets mmseg has no class for (VOC20 and
COCO-Object), in mmseg's formats, and the COCO-Object label conversion.

The other six benchmarks use mmseg's own ``PascalVOCDataset``,
``PascalContextDataset`` / ``PascalContextDataset59``, ``COCOStuffDataset``,
``CityscapesDataset`` and ``ADE20KDataset``. Importing this module imports
mmseg (optional requirement): the zero-shot segmentation configs list it in
``custom_imports``.
"""
import numpy as np
from mmseg.datasets import BaseSegDataset, PascalVOCDataset
from mmseg.registry import DATASETS

__all__ = ['PascalVOC20Dataset', 'COCOObjectDataset', 'COCO_THING_IDS', 'coco_object_labels']

#: COCO-Stuff-164k raw label ids (COCO category id - 1) of the 80 thing
#: classes, in order; ids 91.. are stuff, 255 unlabelled.
COCO_THING_IDS = tuple(i for i in range(90) if i not in (11, 25, 28, 29, 44, 65, 67, 68, 70,
                                                          82))


@DATASETS.register_module()
class PascalVOC20Dataset(BaseSegDataset):
    """Pascal VOC 2012 without its background class (the "VOC20" of MaskCLIP /
    SCLIP / ClearCLIP): the files of ``PascalVOCDataset``, labels 1..20 read as
    0..19 and the background ignored (``reduce_zero_label=True``)."""
    METAINFO = dict(classes=PascalVOCDataset.METAINFO['classes'][1:],
                    palette=PascalVOCDataset.METAINFO['palette'][1:])

    def __init__(self, ann_file='', img_suffix='.jpg', seg_map_suffix='.png',
                 reduce_zero_label=True, **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix,
                         reduce_zero_label=reduce_zero_label, ann_file=ann_file, **kwargs)


@DATASETS.register_module()
class COCOObjectDataset(BaseSegDataset):
    """COCO-Object (GroupViT / TCL / SCLIP): COCO-Stuff-164k images with the 80
    thing classes as labels 1..80 and everything else (stuff and unlabelled)
    as background 0, in ``<name>_instanceTrainIds.png`` files written by
    :func:`coco_object_labels` (``tools/dataset_converters/coco_object.py``)."""
    METAINFO = dict(
        classes=('background', 'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus',
                 'train', 'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
                 'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
                 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
                 'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
                 'baseball bat', 'baseball glove', 'skateboard', 'surfboard', 'tennis racket',
                 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon', 'bowl', 'banana',
                 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog', 'pizza',
                 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table',
                 'toilet', 'tv', 'laptop', 'mouse', 'remote', 'keyboard', 'cell phone',
                 'microwave', 'oven', 'toaster', 'sink', 'refrigerator', 'book', 'clock',
                 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush'))

    def __init__(self, img_suffix='.jpg', seg_map_suffix='_instanceTrainIds.png',
                 **kwargs) -> None:
        super().__init__(img_suffix=img_suffix, seg_map_suffix=seg_map_suffix, **kwargs)


def coco_object_labels(raw: np.ndarray) -> np.ndarray:
    """A COCO-Stuff-164k raw label map (``annotations/val2017/*.png``: COCO id
    - 1, 255 unlabelled) -> COCO-Object labels (thing ``k`` -> ``k + 1``,
    everything else -> 0), as GroupViT's conversion script does."""
    raw = np.asarray(raw)
    lut = np.zeros(256, np.uint8)
    lut[list(COCO_THING_IDS)] = np.arange(1, 81, dtype=np.uint8)
    return lut[raw]

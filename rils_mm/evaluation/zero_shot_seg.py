"""The zero-shot segmentation protocol (configs/benchmarks/zero_shot_seg/) as a
report section: run a set config on any image-text checkpoint, and the
published reference figures."""
import copy
from typing import Optional

from mmengine.config import Config

__all__ = ['ZERO_SHOT_SEG_SETS', 'SCLIP_VITB16_MIOU', 'zero_shot_seg_cfg', 'run_zero_shot_seg']

#: column -> config stem, in the order SCLIP / ClearCLIP report them
ZERO_SHOT_SEG_SETS = {
    'VOC21': 'voc21', 'Context60': 'context60', 'COCO-Object': 'coco_object',
    'VOC20': 'voc20', 'Context59': 'context59', 'COCO-Stuff': 'coco_stuff164k',
    'Cityscapes': 'cityscapes', 'ADE20K': 'ade20k',
}

#: SCLIP (Wang et al., ECCV 2024), CLIP ViT-B/16 (OpenAI), mIoU % from its
#: released code's README (no post-processing).
SCLIP_VITB16_MIOU = {
    'VOC21': 59.63, 'Context60': 31.74, 'COCO-Object': 33.52, 'VOC20': 81.54,
    'Context59': 34.46, 'COCO-Stuff': 22.77, 'Cityscapes': 32.34, 'ADE20K': 16.45,
}


def zero_shot_seg_cfg(model_cfg: Config, seg_cfg: Config,
                      data_root: Optional[str] = None) -> Config:
    """``seg_cfg`` (a zero-shot segmentation set) with the image-text model of
    ``model_cfg`` (the checkpoint's pre-training config)."""
    if seg_cfg.get('model', {}).get('type') != 'ZeroShotSegmentor':
        raise KeyError(f'{seg_cfg.filename!r} is not a zero-shot segmentation config '
                       '(model.type must be ZeroShotSegmentor)')
    cfg = copy.deepcopy(seg_cfg)
    cfg.model.image_text_model = copy.deepcopy(model_cfg.model.to_dict())
    if data_root is not None:
        cfg.test_dataloader.dataset.data_root = data_root
    return cfg


def run_zero_shot_seg(model_cfg: Config, seg_cfg: Config, checkpoint: str, work_dir: str,
                      data_root: Optional[str] = None, launcher: str = 'none') -> dict:
    """mIoU / mAcc / aAcc of ``checkpoint`` on one set, by mmseg's test loop."""
    from mmengine.runner import Runner
    cfg = zero_shot_seg_cfg(model_cfg, seg_cfg, data_root)
    cfg.work_dir, cfg.load_from, cfg.launcher = work_dir, checkpoint, launcher
    return Runner.from_cfg(cfg).test()

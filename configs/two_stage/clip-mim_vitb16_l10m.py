# Table 9, CLIP->MIM: stage 1 is CLIP (configs/clip/clip_vitb16_l10m.py); this stage 2 is
# MIM against the frozen CLIP image encoder's features (as MVP / BEiT v2 / MILAN use CLIP):
# mmpretrain's EVA (random 75 % masking, MAE decoder) on the MAE L-10M config, predicting the
# teacher's joint-space features theta(f) of the masked patches with the cosine loss
# 2 - 2 cos(pred, target) (configs/_base_/models/clip-mim_vitb16.py). No text tower, so no
# zero-shot evaluation.
#   tools/dist_train.sh configs/two_stage/clip-mim_vitb16_l10m.py 32 \
#       --cfg-options model.target_generator.checkpoint=work_dirs/clip_vitb16_l10m/epoch_25.pth
_base_ = [
    '../_base_/models/clip-mim_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]
train_dataloader = dict(
    dataset=dict(urls='data/laion400m/{00000..00999}.tar', num_samples=10_000_000))
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
find_unused_parameters = True  # as mmpretrain's MILAN and EVA configs

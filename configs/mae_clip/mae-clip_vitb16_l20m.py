# MAE+CLIP (Fig. 2, Tables 1 and 10 "raw pixel space"): the RILS ViT-B/16 L-20M config with
# the reconstruction target changed only: RILS' 1-block decoder predicts normalised pixels of
# the masked patches (MAE's loss) and the intact view gives L_contra; the two are summed.
#   tools/dist_train.sh configs/mae_clip/mae-clip_vitb16_l20m.py 32
_base_ = [
    '../_base_/models/mae-clip_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]

# CLIP baseline (Tables 1, 9): the RILS ViT-B/16 L-20M config with the method changed only:
# intact view + text, contrastive loss; no masked view, no decoder, no L_recon.
#   tools/dist_train.sh configs/clip/clip_vitb16_l20m.py 32      (32 GPUs x 128 = 4096)
_base_ = [
    '../_base_/models/clip_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]

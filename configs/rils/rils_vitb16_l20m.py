# RILS ViT-B/16 on L-20M for 25 epochs, exactly as the paper (Sec. 3.3):
#   tools/dist_train.sh configs/rils/rils_vitb16_l20m.py 32      (32 GPUs x 128 = 4096)
_base_ = [
    '../_base_/models/rils_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]

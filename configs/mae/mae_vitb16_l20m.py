# MAE baseline (Tables 1, 9): mmpretrain's own MAE (configs/_base_/models/mae_vitb16.py) on
# the RILS data pipeline and schedule; the captions are loaded but ignored.
#   tools/dist_train.sh configs/mae/mae_vitb16_l20m.py 32
_base_ = [
    '../_base_/models/mae_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]
# No text tower, so no zero-shot evaluation.
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None

# MILAN (Hou et al. 2022): mmpretrain's MILAN (configs/_base_/models/milan_vitb16.py) on the
# RILS data pipeline and schedule (the MAE ViT-B/16 L-20M config). Targets are the
# joint-space features of a frozen CLIP image encoder trained by this project, and the
# semantic-aware sampling keeps patches with probability ~ the teacher's CLS attention.
#   tools/dist_train.sh configs/milan/milan_vitb16_l20m.py 32 \
#       --cfg-options model.target_generator.checkpoint=work_dirs/clip_vitb16_l20m/epoch_25.pth
# An open_clip / OpenAI ViT-B/16 state-dict file instead (local file, never downloaded):
#   --cfg-options model.target_generator="dict(type='CLIPGenerator',tokenizer_path='x.pt')"
# (mmpretrain's CLIPGenerator; replace target_generator with _delete_ in a config).
_base_ = [
    '../_base_/models/milan_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]
# No text tower, so no zero-shot evaluation.
val_dataloader = val_evaluator = val_cfg = None
test_dataloader = test_evaluator = test_cfg = None
find_unused_parameters = True  # as mmpretrain's MILAN and EVA configs

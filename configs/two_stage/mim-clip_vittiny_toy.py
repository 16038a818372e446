# MIM->CLIP at toy scale: CLIP toy config from the toy MAE's encoder, fully trained.
#   python tools/train.py configs/mae/mae_vittiny_toy.py        (stage 1)
#   python tools/train.py configs/two_stage/mim-clip_vittiny_toy.py
_base_ = '../clip/clip_vittiny_toy.py'
mae_checkpoint = 'work_dirs/mae_vittiny_toy/epoch_10.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=mae_checkpoint,
                      prefix='backbone.')))

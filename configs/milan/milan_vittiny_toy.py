# The tiny MILAN on the toy corpus: toy MAE encoder, 2-block prompting decoder, targets and
# attention from the frozen toy CLIP.
#   python tools/train.py configs/clip/clip_vittiny_toy.py      (the teacher)
#   python tools/train.py configs/milan/milan_vittiny_toy.py
_base_ = '../mae/mae_vittiny_toy.py'
clip_checkpoint = 'work_dirs/clip_vittiny_toy/epoch_10.pth'
model = dict(
    type='MILAN',
    backbone=dict(type='MILANViT'),
    neck=dict(
        _delete_=True,
        type='MILANPretrainDecoder',
        num_patches=64,
        patch_size=8,
        embed_dim=128,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
        predict_feature_dim=128),
    head=dict(
        _delete_=True,
        type='MIMHead',
        loss=dict(type='CosineSimilarityLoss', shift_factor=2.0, scale_factor=2.0)),
    target_generator=dict(
        type='CLIPTeacher',
        checkpoint=clip_checkpoint,
        backbone=dict(
            type='RILSViT',
            arch=dict(embed_dims=128, num_layers=4, num_heads=4, feedforward_channels=512),
            img_size=64, patch_size=8, qv_bias=True, norm_cfg=dict(type='LN', eps=1e-6)),
        vision_dims=128,
        embed_dims=128))

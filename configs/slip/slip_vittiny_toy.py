# The tiny SLIP on the toy corpus: the RILS toy config plus SLIP's SSL branch, its MLP scaled
# to the toy width (512 hidden, 128 out) with plain BatchNorm (SyncBN needs GPUs).
_base_ = '../rils/rils_vittiny_toy.py'
image_size = 64
ssl_view = [
    dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.08, 1.0)),
    dict(type='RandomApply', prob=0.8, transforms=[
        dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)]),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True,
         channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='GaussianBlur', magnitude_range=(0.1, 2.0), magnitude_std='inf', prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
clip_view = [dict(type='RandomResizedCrop', scale=image_size, crop_ratio_range=(0.5, 1.0))]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='MultiView', num_views=[1, 2], transforms=[clip_view, ssl_view]),
    dict(type='TokenizeText', context_length=32),
    dict(type='PackImageTextInputs'),
]))
model = dict(
    type='SLIP',
    neck=None,
    head=dict(
        _delete_=True,
        type='ImageTextContrastiveHead',
        vision_dims=128,
        text_dims=128,
        embed_dims=128,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
    ssl_neck=dict(
        type='NonLinearNeck',
        in_channels=128,
        hid_channels=512,
        out_channels=128,
        num_layers=3,
        with_bias=True,
        with_last_bias=True,
        with_last_bn=False,
        with_avg_pool=False,
        norm_cfg=dict(type='BN1d')),
    ssl_loss=dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
)

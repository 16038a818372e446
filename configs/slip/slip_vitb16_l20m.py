# SLIP baseline (Table 1): CLIP + SimCLR, SLIP's recipe for the SSL part: 3-layer MLP
# (4096 hidden, SyncBN, 256 out), NT-Xent with temperature 0.1, SSL scale 1.0, two views
# with SLIP's augmentations; the CLIP view, encoder, text encoder, head and schedule are the
# RILS ViT-B/16 L-20M config's.
#   tools/dist_train.sh configs/slip/slip_vitb16_l20m.py 32
_base_ = '../rils/rils_vitb16_l20m.py'
image_size = 224
# SLIP's `augment`: RandomResizedCrop(0.08-1), ColorJitter(0.4, 0.4, 0.4, 0.1) p 0.8,
# grayscale p 0.2, Gaussian blur sigma 0.1-2 p 0.5, horizontal flip.
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
    dict(type='MultiView', num_views=[1, 2], transforms=[clip_view, ssl_view]),
    dict(type='TokenizeText', context_length=77),
    dict(type='PackImageTextInputs'),
]))
model = dict(
    type='SLIP',
    neck=None,
    head=dict(
        _delete_=True,
        type='ImageTextContrastiveHead',
        vision_dims=768,
        text_dims=512,
        embed_dims=512,
        init_logit_scale=1 / 0.07,
        logit_scale_max=100.0,
        contrastive_loss=dict(type='ImageTextContrastiveLoss', loss_weight=1.0)),
    ssl_neck=dict(
        type='NonLinearNeck',
        in_channels=768,
        hid_channels=4096,
        out_channels=256,
        num_layers=3,
        with_bias=True,
        with_last_bias=True,
        with_last_bn=False,
        with_avg_pool=False,
        norm_cfg=dict(type='SyncBN')),
    ssl_loss=dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
)

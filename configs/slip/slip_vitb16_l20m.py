# SLIP baseline (Table 1): CLIP + SimCLR, SLIP's recipe for the SSL part: 3-layer MLP
# (4096 hidden, SyncBN, 256 out), NT-Xent with temperature 0.1, SSL scale 1.0
# (configs/_base_/models/slip_vitb16.py), two views with SLIP's augmentations; the CLIP view,
# encoder, text encoder, head and schedule are the RILS ViT-B/16 L-20M config's.
#   tools/dist_train.sh configs/slip/slip_vitb16_l20m.py 32
_base_ = [
    '../_base_/models/slip_vitb16.py',
    '../_base_/datasets/laion_wds.py',
    '../_base_/schedules/adamw_25e.py',
    '../_base_/default_runtime.py',
]
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

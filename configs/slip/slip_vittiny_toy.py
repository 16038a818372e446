# The tiny SLIP on the toy corpus (model: configs/_base_/models/slip_vittiny.py): the RILS toy
# data and schedule, each image in SLIP's three views (the CLIP crop and two SimCLR views).
_base_ = ['../_base_/models/slip_vittiny.py', '../_base_/toy_cpu.py']
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

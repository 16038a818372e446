# A tiny RILS for the toy corpus: trains on 2 CPU cores in a few minutes and evaluates
# zero-shot classification on the held-out toy split after every epoch.
_base_ = [
    '../_base_/models/rils_vit-base-p16.py',
    '../_base_/datasets/toy_image_text.py',
    '../_base_/schedules/rils_adamw_25e.py',
    '../_base_/default_runtime.py',
]
width, text_width = 128, 128
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=4,
                  feedforward_channels=4 * width),
        img_size=64,
        patch_size=8),
    neck=dict(num_patches=64, embed_dim=width, decoder_num_heads=4),
    text_encoder=dict(context_length=32, width=text_width, heads=4, layers=4),
    head=dict(vision_dims=width, text_dims=text_width, embed_dims=128),
)
max_epochs = 10
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-8),
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
custom_hooks = [
    dict(type='LogitScaleClampHook'),
    dict(type='RNGStateHook'),
    dict(type='DataSkipCounterHook', max_skip_ratio=0.5, min_samples=200),
    dict(type='ZeroShotClassifierHook'),
]
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)

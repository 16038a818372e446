# Data, schedule and runtime of every toy config (`configs/*/*_vittiny_toy.py`): the toy
# corpus (CSV + JPEG) for 10 epochs in fp32 on CPU cores, zero-shot evaluation on the
# held-out split after the last epoch. A toy config adds its model:
#   _base_ = ['../_base_/models/<method>_vittiny.py', '../_base_/toy_cpu.py']
_base_ = [
    './datasets/toy_csv.py',
    './schedules/adamw_25e.py',
    './default_runtime.py',
]
max_epochs = 10
optim_wrapper = dict(
    _delete_=True,
    type='FiniteStepOptimWrapper',  # fp32; skips non-finite steps
    constructor={{_base_.optim_wrapper.constructor}},
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.1, betas=(0.9, 0.98), eps=1e-8),
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1,
         end=max_epochs, convert_to_iter_based=True),
]
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
auto_scale_lr = dict(base_batch_size=64)
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=False)

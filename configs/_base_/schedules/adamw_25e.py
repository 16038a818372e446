# Paper Sec. 3.3 + SLIP recipe: AdamW lr 5e-4 @ batch 4096, wd 0.5, betas (0.9, 0.98);
# per-iteration linear warm-up for 1 epoch from 1e-6, cosine to 1e-5; 25 epochs; AMP.
# Weight decay groups as SLIP's main.py: no decay where `p.ndim < 2` or the name has 'bias',
# 'ln' or 'bn'; everything else decays, the class / mask tokens, the text token and position
# embeddings and the projections theta, phi included (the sin-cos position tables are fixed).
# In mmengine's terms: biases, norm layers and 1-d parameters (flat), plus the 0-d logit scale.
optim_wrapper = dict(
    type='FiniteStepAmpOptimWrapper',  # AmpOptimWrapper that skips non-finite steps
    loss_scale='dynamic',
    # mmengine's groups merged into one per set of equal hyper-parameters (decay / no
    # decay ...): 3 AdamW groups instead of 331, the same update; paramwise_cfg
    # `per_param_groups=True` keeps one group per parameter (docs/en/performance.md).
    constructor='mmpretrain.MergedParamGroupsOptimWrapperConstructor',
    # fused=True: one fused kernel per step (CUDA, and CPU with torch >= 2.4); the
    # same update as the default foreach AdamW (tests/test_performance.py) and a
    # 6.8x faster optimiser step on this project's CPU (README, Performance).
    optimizer=dict(
        type='AdamW', lr=5e-4, weight_decay=0.5, betas=(0.9, 0.98), eps=1e-8, fused=True),
    paramwise_cfg=dict(
        bias_decay_mult=0.0,
        norm_decay_mult=0.0,
        flat_decay_mult=0.0,
        custom_keys={'logit_scale': dict(decay_mult=0.0)}),
)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 5e-4, by_epoch=True, begin=0,
         end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1,
         end=25, convert_to_iter_based=True),
]
# EpochBasedTrainLoop that resumes a mid-epoch checkpoint at the next unseen batch
train_cfg = dict(type='ResumableEpochBasedTrainLoop', max_epochs=25)
# lr 5e-4 is for the global batch 4096 (32 GPUs x 128); `--auto-scale-lr` rescales it.
auto_scale_lr = dict(base_batch_size=4096, enable=False)

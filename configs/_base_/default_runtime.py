default_scope = 'mmpretrain'
custom_imports = dict(imports=['rils_mm'], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Atomic writes (tmp + fsync + rename, pointer after, pruning after); mid-epoch
    # checkpoints every `interval_iters` iterations (2000: about 30 min of the paper run).
    checkpoint=dict(type='AtomicCheckpointHook', interval=1, interval_iters=2000,
                    max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # On SIGUSR1 / SIGTERM (SLURM's warning before a time limit or preemption): finish the
    # iteration, write iter_N.pth on every rank's behalf, exit 75 ("requeue me").
    preemption=dict(type='PreemptionHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
# Model-agnostic hooks: each acts only where the model / data set has what it serves.
custom_hooks = [
    dict(type='LogitScaleClampHook'),  # heads with a learnable temperature (CLIP, RILS, ...)
    dict(type='RNGStateHook'),  # exact resume: python / numpy / torch generator states
    dict(type='NonFiniteStepHook'),  # logs skipped NaN/inf steps with their loss terms
    # resumes checkpoints of one optimiser group per parameter into merged groups
    dict(type='ParamGroupLayoutHook'),
    dict(type='DataSkipCounterHook', max_skip_ratio=0.5, min_samples=200),
    dict(type='DatasetEpochHook'),  # forwards the epoch (and seed) to the train data set
    dict(type='ZeroShotClassifierHook'),  # text-tower models on zero-shot eval sets
]

env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# Training curves: every logged scalar (each loss term, aligned_ratio = |C|/B, logit_scale,
# lr, ...) goes to <work_dir>/<timestamp>/vis_data/scalars.json (plot with
# tools/analysis/plot_logs.py), and to TensorBoard event files when tensorboard is installed.
vis_backends = [dict(type='LocalVisBackend'), dict(type='OptionalTensorboardVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, diff_rank_seed=True)

# Training-free open-vocabulary semantic segmentation (the MaskCLIP / SCLIP / ClearCLIP
# protocol on mmseg): every patch's ||theta(f^k)|| (Eq. 7) scored against the class
# prompts' embeddings (CLIP's 80 ImageNet templates, names with synonyms), 224-px sliding
# windows with stride 112 on images resized to a short side of 336, upsampled to the label
# size, mIoU by mmseg's IoUMetric. Nothing is trained.
#   python tools/test.py configs/benchmarks/zero_shot_seg/<set>.py CHECKPOINT
# The architecture is the ViT-B/16 image-text model of the paper (any method's checkpoint of
# this project loads: RILS, CLIP, MAE+CLIP, SLIP, MIM->CLIP; or an open_clip CLIP state dict).
# Another architecture: --cfg-options model.image_text_model=configs/rils/rils_vittiny_toy.py
_base_ = ['../../../_base_/models/clip_vitb16.py']
default_scope = 'mmseg'
custom_imports = dict(imports=['rils_mm', 'rils_mm.models.segmentors'],
                      allow_failed_imports=False)

short_side = 336
model = dict(
    _delete_=True,
    type='ZeroShotSegmentor',
    image_text_model={{_base_.model}},
    class_names=None,  # each set config gives its classes (with synonyms)
    templates='imagenet1k',  # CLIP's 80-template ImageNet ensemble (clip-benchmark's copy)
    last_block='plain',  # or 'maskclip', 'sclip', 'clearclip'
    logit_scale=40.0,
    prob_threshold=0.0,
    background_index=None,
    test_cfg=dict(mode='slide', crop_size=(224, 224), stride=(112, 112)))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, short_side), keep_ratio=True),
    # annotations after Resize: the prediction is resized to the label, not the reverse
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(pipeline=test_pipeline))
test_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_cfg = dict(type='TestLoop')

env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook', draw=False))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False

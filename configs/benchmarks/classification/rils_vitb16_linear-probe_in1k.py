# ImageNet-1K linear probing (paper Table 1, "Lin."): mmpretrain's MAE recipe (LARS lr 6.4 for
# batch 16384, 90 epochs, 10 warm-up, BatchNorm without affine + linear head) on the frozen
# RILSViT-B/16. The feature is the mean of the final-normed patch tokens, the one RILS pools
# for its image embedding (Eq. 4); RILS never trains the CLS output. CLIP mean/std as in
# pretraining. Train: tools/train.py THIS --cfg-options model.backbone.init_cfg.checkpoint=X
# (X: a pretraining checkpoint, prefix 'backbone.', or a tools/model_converters/
# extract_backbone.py output with init_cfg.prefix=None).
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'
custom_imports = dict(imports=['rils_mm'], allow_failed_imports=False)
clip_mean = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
clip_std = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
data_preprocessor = dict(mean=clip_mean, std=clip_std)
model = dict(
    backbone=dict(
        _delete_=True,
        type='RILSViT',
        arch='b',
        img_size=224,
        patch_size=16,
        qv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        frozen_stages=12,
        out_type='avg_featmap',
        final_norm=True,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')),
    neck=dict(type='ClsBatchNormNeck', input_features=768),
    head=dict(in_channels=768))

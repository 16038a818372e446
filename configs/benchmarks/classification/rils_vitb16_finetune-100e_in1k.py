# ImageNet-1K end-to-end fine-tuning (paper Table 1, "FT."): mmpretrain's MAE recipe: 100 epochs
# with 5 warm-up, AdamW lr 2e-3 (batch 1024), layer-wise lr decay 0.65, drop path 0.1,
# RandAugment (9/0.5), random erasing 0.25, mixup 0.8 / cutmix 1.0, label smoothing 0.1,
# global average pooling; RILSViT-B/16 initialised from a RILS checkpoint. CLIP mean/std as
# in pretraining; q/v biases without weight decay like every other bias.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'
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
        drop_path_rate=0.1,
        out_type='avg_featmap',
        final_norm=False,
        init_cfg=dict(type='Pretrained', checkpoint='', prefix='backbone.')))
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={
        '.q_bias': dict(decay_mult=0.0),
        '.v_bias': dict(decay_mult=0.0),
    }))

# RILS ViT-B/16 -> UperNet on ADE20K, 512x512 crops, 160k iterations (paper Table 3),
# with mmseg's MAE ViT-B recipe unchanged: AdamW lr 1e-4, wd 0.05, layer-wise lr
# decay 0.65, drop path 0.1, relative position bias, multi-level features from
# blocks 4/6/8/12 rescaled x4/x2/x1/x0.5 (Feature2Pyramid), 1500-iteration warm-up
# then poly decay, batch 16 (8 GPUs x 2), sliding-window test.
# Relative positions use ViTDet's decomposed (row + column) bias of RILSViT, not
# BEiT's 2-d table; the backbone has no layer scale (RILS pre-trains without it).
_base_ = [
    'mmseg::_base_/models/upernet_mae.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]
custom_imports = dict(imports=['rils_mm'], allow_failed_imports=False)

checkpoint = 'checkpoints/rils_vitb16_l20m.pth'
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(
        # the pre-training normalisation (CLIP's RGB mean/std)
        mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
        std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
        size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmpretrain.RILSViT',
        arch='b',
        img_size=crop_size[0],
        patch_size=16,
        drop_path_rate=0.1,
        use_rel_pos=True,
        final_norm=False,
        out_type='featmap',
        out_indices=(3, 5, 7, 11),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(embed_dim=768, rescales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], num_classes=150, channels=768),
    auxiliary_head=dict(in_channels=768, num_classes=150),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0)}),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader

# ViTDet Mask R-CNN (Li et al. 2022) on a RILS ViT-B/16 (paper Sec. 4.1, "Object
# Detection and Segmentation"): window attention (14x14) in every block but the
# global blocks 2, 5, 8, 11; absolute positions interpolated to the input;
# decomposed relative position bias; drop path 0.1; SimpleFPN (strides 4-64 from
# the stride-16 map); RPN with 2 convs; 4conv1fc box head and mask head with
# LayerNorm; AdamW with layer-wise lr decay 0.7.
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py']
custom_imports = dict(imports=['rils_mm'], allow_failed_imports=False)

# The RILS pre-training checkpoint (tools/train.py configs/rils/rils_vitb16_l20m.py),
# or a backbone-only one; the decoder, text tower and projections are dropped.
checkpoint = 'checkpoints/rils_vitb16_l20m.pth'
head_norm_cfg = dict(type='mmpretrain.LN2d', eps=1e-6, requires_grad=True)

model = dict(
    data_preprocessor=dict(
        # the pre-training normalisation (CLIP's RGB mean/std)
        mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
        std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
        bgr_to_rgb=True,
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='mmpretrain.RILSViT',
        arch='b',
        img_size=1024,  # 64x64 tokens; pre-training's 14x14 positions are resized
        patch_size=16,
        drop_path_rate=0.1,
        window_size=14,
        global_attn_indexes=(2, 5, 8, 11),
        use_rel_pos=True,
        final_norm=False,
        out_type='featmap',
        out_indices=(11, ),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='mmpretrain.SimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=dict(type='LN2d', eps=1e-6)),
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(
            type='Shared4Conv1FCBBoxHead', conv_out_channels=256, norm_cfg=head_norm_cfg),
        mask_head=dict(norm_cfg=head_norm_cfg)))

# ViTDet ViT-B: AdamW lr 1e-4, wd 0.1, layer decay 0.7; no decay on 1-d parameters
# (biases, norms, q/v biases) or positions. Batch 64 (16 GPUs x 4).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='mmpretrain.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        flat_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0)}),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))
auto_scale_lr = dict(enable=False, base_batch_size=64)

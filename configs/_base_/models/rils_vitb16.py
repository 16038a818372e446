# RILS with ViT-B/16 (paper Sec. 3.3): encoder 768/12 blocks, decoder 1 block 768-d 12
# heads, CLIP text encoder 12 layers 512-d 8 heads, joint space 512.
_vit_init = [
    dict(type='Xavier', layer='Linear', distribution='uniform'),
    dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0),
]
model = dict(
    type='RILS',
    backbone=dict(
        type='RILSViT',
        arch='b',
        img_size=224,
        patch_size=16,
        mask_ratio=0.75,
        qv_bias=True,
        norm_cfg=dict(type='LN', eps=1e-6),
        init_cfg=_vit_init),
    neck=dict(
        type='RILSDecoder',
        num_patches=196,
        embed_dim=768,
        decoder_depth=1,
        decoder_num_heads=12,
        init_cfg=_vit_init),
    text_encoder=dict(
        type='CLIPTextEncoder',
        context_length=77,
        vocab_size=49408,
        width=512,
        heads=8,
        layers=12,
        act_layer='QuickGELU'),  # CLIP / SLIP / official RILS text tower
    head=dict(
        type='RILSHead',
        vision_dims=768,
        text_dims=512,
        embed_dims=512,
        init_logit_scale=1 / 0.07,
        logit_scale_max=100.0,
        # Official (hustvl/RILS) semantics across GPUs: a plain all_gather with no gradient,
        # local rows x global columns; `local_loss=False, gather_with_grad=True` gives the
        # exact global-batch gradient instead (see README, "Differences from the official code").
        contrastive_loss=dict(
            type='ImageTextContrastiveLoss',
            loss_weight=1.0,
            local_loss=True,
            gather_with_grad=False),
        # Official: each GPU divides by its own |C_r||M| + 1e-6; `local_loss=False` uses the
        # global |C||M|.
        recon_loss=dict(
            type='LanguageSpaceReconLoss',
            target_temperature=0.04,
            pred_temperature=0.1,
            loss_weight=0.5,
            local_loss=True),
        text_grad_in_recon=False),
)

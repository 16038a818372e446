# RILS ViT-L/16 on L-20M: encoder 1024/24 blocks, decoder 1 block at encoder width
# (16 heads), text encoder width 768 with 12 heads, joint space 768 (official release).
_base_ = './rils_vitb16_l20m.py'
model = dict(
    backbone=dict(arch='l'),
    neck=dict(embed_dim=1024, decoder_num_heads=16),
    text_encoder=dict(width=768, heads=12),
    head=dict(vision_dims=1024, text_dims=768, embed_dims=768),
)

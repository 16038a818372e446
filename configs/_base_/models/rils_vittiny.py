# A tiny RILS for the CPU toy corpus (64 px, patch 8): ViT 4 blocks x 128, 1-block decoder,
# 4-layer text encoder with 32 token positions. Everything else as the ViT-B/16 paper model.
_base_ = './rils_vitb16.py'
width, text_width = 128, 128
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=width, num_layers=4, num_heads=4,
                  feedforward_channels=4 * width),
        img_size=64,
        patch_size=8),
    neck=dict(num_patches=64, embed_dim=width, decoder_num_heads=4),
    text_encoder=dict(context_length=32, width=text_width, heads=4, layers=4),
    head=dict(vision_dims=width, text_dims=text_width, embed_dims=128),
)

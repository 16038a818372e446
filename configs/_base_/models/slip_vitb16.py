# SLIP with ViT-B/16 (Table 1): the CLIP model plus SLIP's SimCLR branch with SLIP's recipe:
# 3-layer MLP (4096 hidden, SyncBN, 256 out), NT-Xent with temperature 0.1, SSL scale 1.0.
_base_ = './clip_vitb16.py'
model = dict(
    type='SLIP',
    head=dict(contrastive_loss=dict(_delete_=True, type='ImageTextContrastiveLoss',
                                    loss_weight=1.0)),
    ssl_neck=dict(type='NonLinearNeck', in_channels=768, hid_channels=4096, out_channels=256,
                  num_layers=3, with_bias=True, with_last_bias=True, with_last_bn=False,
                  with_avg_pool=False, norm_cfg=dict(type='SyncBN')),
    ssl_loss=dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
)

# The tiny SLIP: the tiny CLIP model (clip_vittiny.py) plus SLIP's SSL branch, its MLP scaled
# to the toy width (512 hidden, 128 out) with plain BatchNorm (SyncBN needs GPUs).
_base_ = './clip_vittiny.py'
model = dict(
    type='SLIP',
    ssl_neck=dict(type='NonLinearNeck', in_channels={{_base_.width}}, hid_channels=512,
                  out_channels=128, num_layers=3, with_bias=True, with_last_bias=True,
                  with_last_bn=False, with_avg_pool=False, norm_cfg=dict(type='BN1d')),
    ssl_loss=dict(type='SimCLRLoss', temperature=0.1, loss_weight=1.0),
)

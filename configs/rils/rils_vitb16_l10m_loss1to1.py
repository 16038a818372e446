# Table 11c: lambda_1 : lambda_2 = 1 : 1 (default 2 : 1, i.e. 1.0 : 0.5: rils_vitb16_l10m.py).
_base_ = './rils_vitb16_l10m.py'
model = dict(head=dict(contrastive_loss=dict(loss_weight=1.0), recon_loss=dict(loss_weight=1.0)))

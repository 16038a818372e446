# RILS ViT-B/16 on L-50M (the first 50 M LAION-400M pairs), 25 epochs.
_base_ = './rils_vitb16_l20m.py'
train_dataloader = dict(
    dataset=dict(urls='data/laion400m/{00000..04999}.tar', num_samples=50_000_000))

# SLIP ViT-B/16 on L-10M, 25 epochs.
_base_ = './slip_vitb16_l20m.py'
train_dataloader = dict(
    dataset=dict(urls='data/laion400m/{00000..00999}.tar', num_samples=10_000_000))

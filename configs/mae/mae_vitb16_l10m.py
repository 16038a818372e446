# MAE ViT-B/16 on L-10M, 25 epochs: the MAE row of Table 9 and the first stage of the
# MIM->LiT and MIM->CLIP two-stage baselines (configs/two_stage/).
_base_ = './mae_vitb16_l20m.py'
train_dataloader = dict(
    dataset=dict(urls='data/laion400m/{00000..00999}.tar', num_samples=10_000_000))

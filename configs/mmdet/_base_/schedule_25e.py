# The 25-epoch fine-tuning schedule of paper Table 2: 250-iteration linear warm-up; x0.1 at
# 22/25 and 24/25 of training (ViTDet's 88/100 and 96/100 applied to 25 epochs).
max_epochs = 25
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[22, 24],
         gamma=0.1),
]

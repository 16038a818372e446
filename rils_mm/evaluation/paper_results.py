"""The paper's downstream numbers (RILS, CVPR 2023), for the report tool.

Transcribed from the paper's Tables 1, 4, 6, 7 and 8 (ViT-B/16, 25 epochs on
L-20M unless noted). Keys match the benchmark names of
``configs/benchmarks/`` and the metric keys the report prints.
"""

#: Table 6 (zero-shot classification, %), in the paper's column order.
TABLE6 = {
    'CLIP': [55.7, 76.0, 46.9, 24.4, 50.7, 17.8, 4.8, 31.5, 53.7, 78.4, 31.8,
             26.8, 37.6, 89.0, 22.7, 36.9, 24.1, 6.8, 20.0, 49.1, 40.3],
    'SLIP': [56.7, 73.4, 43.2, 22.6, 51.6, 17.7, 4.9, 32.4, 52.5, 79.1, 33.3,
             29.4, 33.5, 89.5, 17.8, 36.2, 17.8, 6.8, 23.4, 49.7, 41.6],
    'MAE+CLIP': [57.8, 78.2, 52.4, 23.9, 51.6, 18.1, 4.6, 31.5, 55.8, 78.4,
                 32.0, 27.6, 32.7, 89.8, 27.0, 39.4, 22.9, 7.2, 14.7, 49.3,
                 42.3],
    'RILS': [58.9, 86.2, 55.1, 23.4, 51.8, 19.5, 5.9, 32.8, 59.2, 80.7, 33.5,
             22.6, 40.1, 93.2, 28.8, 40.2, 19.1, 7.8, 16.8, 50.0, 45.0],
}
TABLE6_COLUMNS = [
    'food101', 'cifar10', 'cifar100', 'cub200', 'sun397', 'cars', 'aircraft',
    'dtd', 'pets', 'caltech101', 'flowers', 'mnist', 'fer2013', 'stl10',
    'eurosat', 'resisc45', 'gtsrb', 'country211', 'clevr', 'sst2', 'imagenet'
]
#: the paper's "Average" column of Table 6
TABLE6_AVERAGE = {'CLIP': 39.3, 'SLIP': 38.7, 'MAE+CLIP': 39.9, 'RILS': 42.3}

#: Table 7 (zero-shot retrieval, R@1/5/10 %): I->T then T->I.
TABLE7 = {
    'coco': {
        'CLIP': [41.82, 69.50, 79.34, 30.54, 57.10, 69.30],
        'SLIP': [44.54, 72.20, 82.10, 33.26, 59.66, 71.14],
        'MAE+CLIP': [42.72, 70.66, 80.36, 31.40, 57.50, 69.68],
        'RILS': [45.06, 73.38, 83.36, 34.86, 61.36, 72.78],
    },
    'flickr30k': {
        'CLIP': [28.13, 50.77, 61.12, 20.61, 40.77, 50.49],
        'SLIP': [31.20, 55.81, 66.02, 24.05, 45.58, 55.90],
        'MAE+CLIP': [28.62, 52.25, 62.64, 22.64, 43.67, 53.97],
        'RILS': [32.21, 56.39, 66.67, 25.48, 47.55, 57.94],
    },
}
TABLE7_COLUMNS = ['i2t_R@1', 'i2t_R@5', 'i2t_R@10', 't2i_R@1', 't2i_R@5',
                  't2i_R@10']

#: Table 8 (zero-shot OOD top-1 %).
TABLE8_COLUMNS = ['imagenet-a', 'imagenet-r', 'imagenet-sketch', 'imagenetv2',
                  'objectnet']
TABLE8 = {
    'CLIP': [9.3, 51.2, 28.1, 39.8, 17.7],
    'SLIP': [10.5, 49.8, 26.7, 41.3, 20.4],
    'MAE+CLIP': [11.6, 53.9, 31.1, 41.6, 19.4],
    'RILS': [12.1, 55.7, 31.4, 43.3, 21.0],
}
TABLE8_AVERAGE = {'CLIP': 32.3, 'SLIP': 33.1, 'MAE+CLIP': 34.4, 'RILS': 35.7}

#: Table 4 (low-shot logistic regression on ImageNet-1K, top-1 %, mean and
#: std over seeds) for 1, 2, 5, 10 images per class.
TABLE4 = {
    'MAE': [(3.4, 0.12), (5.2, 0.21), (10.1, 0.10), (14.8, 0.20)],
    'CLIP': [(19.4, 0.18), (29.2, 0.61), (39.8, 0.39), (46.3, 0.15)],
    'SLIP': [(17.7, 0.33), (27.2, 0.56), (38.6, 0.55), (46.4, 0.06)],
    'MAE+CLIP': [(21.1, 0.12), (31.1, 0.94), (41.6, 0.43), (47.5, 0.15)],
    'RILS': [(24.0, 0.27), (34.6, 0.88), (45.7, 0.46), (51.8, 0.18)],
}
TABLE4_SHOTS = [1, 2, 5, 10]

#: Table 1 (ImageNet-1K linear probing / fine-tuning top-1 %, L-20M 25 ep).
TABLE1 = {
    'SimCLR': (51.7, 81.3),
    'MAE': (44.3, 82.1),
    'CLIP': (67.8, 82.7),
    'SLIP': (70.1, 82.6),
    'MAE+CLIP': (64.5, 82.9),
    'RILS': (71.5, 83.3),
}

#: Table 1, longer pre-training: RILS on L-50M, 25 epochs (linear, fine-tune).
TABLE1_L50M = {'RILS': (71.9, 83.6)}

#: Table 2 (ViTDet Mask R-CNN, 25 epochs): (AP^B, AP^M) on COCO and on LVIS.
TABLE2 = {
    'coco': {
        'MAE': (48.1, 42.4), 'CLIP': (47.7, 42.0), 'SLIP': (46.5, 41.5),
        'MAE+CLIP': (48.1, 42.4), 'RILS': (48.5, 42.6),
    },
    'lvis': {
        'MAE': (31.0, 29.6), 'CLIP': (32.3, 30.5), 'SLIP': (32.4, 30.8),
        'MAE+CLIP': (32.6, 30.7), 'RILS': (33.8, 31.6),
    },
}

#: Table 3 (UperNet on ADE20K, 160k iterations, mIoU), L-20M 25 epochs.
TABLE3 = {'MAE': 44.2, 'CLIP': 45.2, 'SLIP': 45.7, 'MAE+CLIP': 45.3, 'RILS': 48.1}

#: Table 5 (low-shot COCO detection, AP^B after 12 epochs) for the sampling ratios.
TABLE5_RATIOS = [1, 2, 5, 10, 20, 50]
TABLE5 = {
    'MAE': [0.94, 6.10, 15.76, 23.16, 29.78, 38.10],
    'CLIP': [0.81, 5.05, 14.98, 22.49, 29.88, 38.50],
    'SLIP': [1.11, 4.54, 13.84, 21.91, 29.53, 37.73],
    'MAE+CLIP': [0.68, 5.28, 14.33, 23.72, 29.99, 39.24],
    'RILS': [0.86, 6.46, 16.94, 24.69, 31.97, 40.41],
}

#: Tables 9-11 (ViT-B/16, L-10M, 25 epochs): (zero-shot, linear, fine-tune) on
#: ImageNet-1K; None where the paper gives no number.
TABLE9 = {
    'MAE': (None, 43.4, 81.5), 'CLIP': (32.1, 64.1, 82.0),
    'MIM->LiT': (13.2, 43.4, 81.5), 'MIM->CLIP': (34.4, 64.8, 82.2),
    'CLIP->MIM': (None, 66.2, 82.4), 'RILS': (37.5, 68.5, 82.7),
}
TABLE10 = {
    'raw pixel space (MAE+CLIP)': (34.2, 61.9, 82.2),
    'high-level vision space': (34.8, 67.7, 82.4),
    'language semantic space (RILS)': (37.5, 68.5, 82.7),
}
TABLE11 = {
    'mask ratio': {0.6: (35.9, 69.3, 82.7), 0.75: (37.5, 68.5, 82.7), 0.9: (37.4, 67.6, 82.3)},
    'decoder blocks': {1: (37.5, 68.5, 82.7), 2: (37.8, 68.9, 82.6), 4: (37.3, 69.6, 82.5)},
    'lambda1:lambda2': {'2:1': (37.5, 68.5, 82.7), '1:1': (36.4, 68.1, 82.3),
                        '1:2': (35.9, 68.2, 82.2)},
}

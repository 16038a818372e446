# COCO 5k test images of Karpathy's split: data/coco/dataset_coco.json and the images under
# data/coco/val2014/ (the JSON's "filepath").
_base_ = ['../_base_/retrieval.py']
test_dataloader = dict(dataset=dict(data_root='data/coco/', ann_file='dataset_coco.json'))

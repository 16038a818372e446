# Flickr30K 1k test images of Karpathy's split: data/flickr30k/dataset_flickr30k.json and
# the images in data/flickr30k/flickr30k-images/.
_base_ = ['../_base_/retrieval.py']
test_dataloader = dict(dataset=dict(data_root='data/flickr30k/',
                                    ann_file='dataset_flickr30k.json',
                                    data_prefix='flickr30k-images'))

"""Image-text retrieval (paper Table 7) on Karpathy's COCO / Flickr30K splits."""
import json
import os.path as osp
from typing import List, Sequence

from mmcv.transforms import BaseTransform
from mmpretrain.datasets.base_dataset import BaseDataset
from mmpretrain.registry import DATASETS, TRANSFORMS

from ..transforms import decode_image_bgr, get_clip_tokenizer
from .layouts import read_bytes

__all__ = ['TokenizeCaptions', 'KarpathyRetrievalDataset']


@TRANSFORMS.register_module()
class TokenizeCaptions(BaseTransform):
    """Tokenise every caption of ``results[text_key]`` (a list of str) with
    open_clip's CLIP tokenizer into a (K, context_length) tensor."""

    def __init__(self,
                 context_length: int = 77,
                 text_key: str = 'captions',
                 out_key: str = 'text_tokens') -> None:
        self.context_length = context_length
        self.text_key = text_key
        self.out_key = out_key

    def transform(self, results: dict) -> dict:
        caps = results.get(self.text_key)
        if not caps or not all(isinstance(c, str) and c.strip()
                               for c in caps):
            raise ValueError(
                f'{results.get("img_path", "sample")}: {self.text_key!r} must '
                f'be a non-empty list of non-empty captions, got {caps!r:.80}')
        results[self.out_key] = get_clip_tokenizer()(
            list(caps), context_length=self.context_length).long()
        return results


@DATASETS.register_module()
class KarpathyRetrievalDataset(BaseDataset):
    """COCO / Flickr30K image-text retrieval on Karpathy's splits.

    ``ann_file`` is Karpathy's ``dataset_coco.json`` / ``dataset_flickr30k.json``:
    ``{"images": [{"filepath"?: str, "filename": str, "split": str,
    "sentences": [{"raw": str}, ...]}, ...]}``; images of ``split`` are read
    from ``data_prefix`` joined with ``filepath`` (COCO: ``val2014``) and
    ``filename``. The COCO 5k test split and the Flickr30K 1k test split are
    ``split='test'``. Each sample keeps its first ``num_captions`` captions
    (5; an image with fewer is an error).

    Args:
        ann_file (str): Karpathy JSON.
        data_prefix (str | dict): image root. Defaults to ''.
        split (str): Defaults to 'test'.
        num_captions (int): Defaults to 5.
        pipeline (Sequence): after decoding, e.g. resize, crop,
            :class:`TokenizeCaptions`, ``PackImageTextInputs``.
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix='',
                 split: str = 'test',
                 num_captions: int = 5,
                 pipeline: Sequence = (),
                 test_mode: bool = True,
                 **kwargs) -> None:
        self.split = split
        self.num_captions = num_captions
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            test_mode=test_mode,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise FileNotFoundError(f'Karpathy split file not found: '
                                    f'{self.ann_file!r}')
        with open(self.ann_file, encoding='utf-8') as f:
            ann = json.load(f)
        if not isinstance(ann, dict) or not isinstance(ann.get('images'),
                                                       list):
            raise ValueError(f'{self.ann_file!r}: expected Karpathy format '
                             '{"images": [...]}')
        root = self.data_prefix.get('img_path', '') or self.data_root
        data_list = []
        for i, im in enumerate(ann['images']):
            if im.get('split') != self.split:
                continue
            try:
                caps = [s['raw'] for s in im['sentences']]
                fname = im['filename']
            except (KeyError, TypeError):
                raise ValueError(
                    f'{self.ann_file!r} images[{i}]: needs "filename" and '
                    '"sentences": [{"raw": ...}]') from None
            if len(caps) < self.num_captions:
                raise ValueError(
                    f'{self.ann_file!r} images[{i}] ({fname}): '
                    f'{len(caps)} captions, expected {self.num_captions}')
            data_list.append(
                dict(
                    img_path=osp.join(root, im.get('filepath', ''), fname),
                    captions=caps[:self.num_captions]))
        if not data_list:
            raise ValueError(f'{self.ann_file!r} has no images of split '
                             f'{self.split!r}')
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        img = decode_image_bgr(read_bytes(info['img_path']))
        info.update(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2])
        return info

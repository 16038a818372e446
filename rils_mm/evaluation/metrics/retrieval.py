"""Zero-shot image-text retrieval metric (paper Table 7)."""
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

__all__ = ['ImageTextRetrievalRecall', 'image_text_recall_at_k']


def image_text_recall_at_k(image_embeds: torch.Tensor,
                           text_embeds: torch.Tensor,
                           text_to_image: torch.Tensor,
                           topk: Sequence[int] = (1, 5, 10)
                           ) -> Dict[str, float]:
    """Recall@k in both directions, in percent.

    * image -> text: an image counts as retrieved at k when **any** of its
      captions is among the k texts most similar to it.
    * text -> image: a caption counts when its image is among the k images
      most similar to it.

    This is the definition of CLIP-style papers (and of clip-benchmark's
    ``(recall_at_k > 0).mean()``). Similarity is the dot product of the given
    (normalised) embeddings.

    Args:
        image_embeds (Tensor): (N_img, D).
        text_embeds (Tensor): (N_txt, D).
        text_to_image (Tensor): (N_txt,) index of each text's image.
        topk (Sequence[int]): the k's.
    """
    scores = image_embeds.float() @ text_embeds.float().t()  # (N_img, N_txt)
    positive = torch.zeros_like(scores, dtype=torch.bool)
    positive[text_to_image, torch.arange(len(text_to_image))] = True
    metrics = {}
    for k in topk:
        k_t = min(k, scores.shape[1])
        top_texts = scores.topk(k_t, dim=1).indices  # (N_img, k)
        i2t = positive.gather(1, top_texts).any(dim=1)
        k_i = min(k, scores.shape[0])
        top_images = scores.t().topk(k_i, dim=1).indices  # (N_txt, k)
        t2i = (top_images == text_to_image[:, None]).any(dim=1)
        metrics[f'i2t_R@{k}'] = i2t.float().mean().item() * 100
        metrics[f't2i_R@{k}'] = t2i.float().mean().item() * 100
    return metrics


@METRICS.register_module()
class ImageTextRetrievalRecall(BaseMetric):
    """Image->text and text->image Recall@k over a whole evaluation set.

    Each data sample from the model carries ``image_embedding`` (D,) of its
    image and ``text_embeddings`` (K, D) of its K captions (5 for COCO and
    Flickr30K Karpathy splits); see the models' ``predict`` in retrieval mode.
    All images are ranked against all captions of the set once every rank's
    results are collected.

    Args:
        topk (Sequence[int]): Defaults to (1, 5, 10).
        collect_device (str): Defaults to 'cpu'.
        prefix (str, optional): Defaults to ``'retrieval'``.
    """
    default_prefix = 'retrieval'

    def __init__(self,
                 topk: Sequence[int] = (1, 5, 10),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = tuple(topk)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for ds in data_samples:
            if 'image_embedding' not in ds or 'text_embeddings' not in ds:
                raise KeyError(
                    'ImageTextRetrievalRecall needs image_embedding and '
                    'text_embeddings in each data sample (the model must '
                    'predict in retrieval mode: give the data samples '
                    f'text_tokens), got keys {sorted(ds)}')
            self.results.append(
                dict(image=ds['image_embedding'].cpu().float(),
                     texts=ds['text_embeddings'].cpu().float()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        images = torch.stack([r['image'] for r in results])
        texts = torch.cat([r['texts'] for r in results])
        owner = torch.cat([
            torch.full((len(r['texts']), ), i, dtype=torch.long)
            for i, r in enumerate(results)
        ])
        return image_text_recall_at_k(images, texts, owner, self.topk)

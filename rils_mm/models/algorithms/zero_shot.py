"""Zero-shot classification for every algorithm with a text tower."""
from typing import List, Optional, Sequence

import open_clip
import torch
import torch.nn.functional as F
from mmpretrain.structures import DataSample

#: CLIP's pixel statistics (0-255 scale), used by every image-text data preprocessor.
CLIP_MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
CLIP_STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]


def clip_data_preprocessor(preprocessor: str = 'ClsDataPreprocessor') -> dict:
    """mmpretrain's ``preprocessor`` (a registry name) with CLIP mean/std and BGR->RGB."""
    return dict(type=preprocessor, mean=CLIP_MEAN, std=CLIP_STD, to_rgb=True)


class ZeroShotClassifierMixin:
    """CLIP-style zero-shot classification (prompt ensembling).

    The host algorithm provides ``encode_image(images)`` and
    ``encode_text(tokens)`` (normalised embeddings), ``self.text_encoder``
    (with ``context_length``) and ``self.head.get_logit_scale()`` (1 / sigma).
    :class:`~rils_mm.engine.hooks.ZeroShotClassifierHook` calls
    :meth:`set_zero_shot_classifier` before every evaluation; ``predict`` then
    scores images by ``(1/sigma) <z^I, w_c>``.
    """

    zero_shot_weights: Optional[torch.Tensor]

    @torch.no_grad()
    def set_zero_shot_classifier(self,
                                 classnames: Sequence[str],
                                 templates: Sequence[str],
                                 batch_size: int = 256) -> torch.Tensor:
        """Build the zero-shot classifier: for each class, the normalised mean
        of the normalised embeddings of its prompts ``template.format(name)``
        (CLIP's prompt ensembling). Returns (num_classes, D)."""
        if not classnames or not templates:
            raise ValueError('zero-shot classification needs class names and '
                             f'prompt templates, got {len(classnames or [])} '
                             f'classes and {len(templates or [])} templates')
        was_training = self.training
        self.eval()
        device = self.head.logit_scale.device
        context = self.text_encoder.context_length
        prompts = [t.format(c) for c in classnames for t in templates]
        embeds = []
        for i in range(0, len(prompts), batch_size):
            tokens = open_clip.tokenize(
                prompts[i:i + batch_size], context_length=context)
            embeds.append(self.encode_text(tokens.to(device)).float())
        embeds = torch.cat(embeds).view(len(classnames), len(templates), -1)
        weights = F.normalize(F.normalize(embeds, dim=-1).mean(1), dim=-1)
        self.zero_shot_weights = weights
        self.train(was_training)
        return weights

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None,
                **kwargs) -> List[DataSample]:
        """Zero-shot classification: ``pred_score`` = softmax over classes of
        ``(1 / sigma) <z^I, w_c>``.

        Retrieval mode, when the data samples carry ``text_tokens`` (K, L), the
        K captions of each image (:class:`KarpathyRetrievalDataset`): each
        sample gets ``image_embedding`` ``z^I`` (D,) and ``text_embeddings``
        ``z^T`` (K, D) for :class:`ImageTextRetrievalRecall`.
        """
        if data_samples and 'text_tokens' in data_samples[0]:
            return self.predict_retrieval(inputs, data_samples)
        if self.zero_shot_weights is None:
            raise RuntimeError(
                f'{type(self).__name__}.predict needs a zero-shot classifier: call '
                'set_zero_shot_classifier(classnames, templates) or add '
                "dict(type='ZeroShotClassifierHook') to custom_hooks")
        z = self.encode_image(inputs).float()
        logits = self.head.get_logit_scale() * z @ self.zero_shot_weights.t()
        scores = logits.softmax(dim=-1)
        if data_samples is None:
            data_samples = [DataSample() for _ in range(scores.shape[0])]
        for ds, score in zip(data_samples, scores):
            ds.set_pred_score(score).set_pred_label(score.argmax())
        return data_samples

    @torch.no_grad()
    def predict_retrieval(self, inputs: torch.Tensor,
                          data_samples: List[DataSample]) -> List[DataSample]:
        """Image and caption embeddings (Eq. 4) of a batch for retrieval."""
        z_image = self.encode_image(inputs).float()
        tokens = torch.cat([ds.text_tokens for ds in data_samples])
        z_text = self.encode_text(tokens.to(z_image.device)).float()
        start = 0
        for ds, z in zip(data_samples, z_image):
            k = len(ds.text_tokens)
            ds.set_field(z, 'image_embedding')
            ds.set_field(z_text[start:start + k], 'text_embeddings')
            start += k
        return data_samples

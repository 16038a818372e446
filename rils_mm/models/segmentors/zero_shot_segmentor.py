"""Training-free open-vocabulary semantic segmentation from language-space
patches (an mmseg segmentor over any image-text model of the project)."""
import os.path as osp
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData
from mmpretrain.registry import MODELS as PRETRAIN_MODELS
from mmseg.models.segmentors import BaseSegmentor, EncoderDecoder
from mmseg.models.utils import resize
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from ..algorithms.zero_shot import CLIP_MEAN, CLIP_STD, ZeroShotClassifierMixin
from .last_block import LAST_BLOCK_VARIANTS, dense_patch_tokens

__all__ = ['ZeroShotSegmentor', 'parse_class_names']

_REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_class_names(class_names: Sequence[Union[str, Sequence[str]]]):
    """Class names with synonyms -> (queries, query -> class index).

    An entry is a list of names or one string of comma-separated names
    (SCLIP's ``cls_*.txt`` rule: ``'person, person in shirt'`` is one class)."""
    queries, owner = [], []
    for index, entry in enumerate(class_names):
        names = [n.strip() for n in (entry.split(',') if isinstance(entry, str) else entry)]
        names = [n for n in names if n]
        if not names:
            raise ValueError(f'class {index} has no name (got {entry!r})')
        queries += names
        owner += [index] * len(names)
    return queries, owner


def _model_cfg(image_text_model) -> dict:
    if isinstance(image_text_model, dict):
        return dict(image_text_model)
    path = image_text_model
    if not osp.isfile(path) and osp.isfile(osp.join(_REPO_ROOT, path)):
        path = osp.join(_REPO_ROOT, path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'image_text_model: no config file {image_text_model!r}')
    cfg = Config.fromfile(path)
    if 'model' not in cfg:
        raise KeyError(f'image_text_model: {path!r} has no `model`')
    return cfg.model.to_dict()


def _from_open_clip(state_dict):
    """open_clip ``CLIP`` keys -> ours, through the project's converter."""
    try:  # the converters' package, where it exists
        from rils_mm.utils.export.open_clip import from_open_clip
    except ImportError:
        from rils_mm.utils.model_convert import from_open_clip
    return from_open_clip(state_dict)


@MODELS.register_module()
class ZeroShotSegmentor(ZeroShotClassifierMixin, BaseSegmentor):
    """Segment by class names alone: every patch is scored against the class
    prompts in the joint space, with no training on masks.

    For a patch feature ``f^k`` of V-Enc (Eq. 1) the score of class prompt
    ``c`` is ``<||theta(f^k)||, w_c>`` -- Eq. 8 without the softmax and the
    temperature, the texts being the class prompts instead of the batch's
    captions; ``w_c`` is the prompt-ensemble embedding of the name
    (``||mean_t ||phi(h(t(c)))|| ||``, Eq. 4, built by
    :meth:`ZeroShotClassifierMixin.set_zero_shot_classifier` from ``templates``).
    Patch scores are upsampled (bilinear) to the window, windows are averaged
    (mmseg's sliding-window inference, ``test_cfg``), the map is resized to the
    label size, and per pixel ``softmax(logit_scale * scores)`` over the
    prompts is max-pooled over each class's names. Background, as the protocol
    has it: background *names* (an entry of ``class_names`` holding e.g.
    ``'sky, wall, tree, ...'``) and / or a threshold: pixels whose best class
    probability is below ``prob_threshold`` go to ``background_index``;
    ``area_threshold`` (SCLIP's VOC21 rule) removes a foreground class covering
    less than that fraction of the predicted foreground.

    The image-text model (RILS, CLIP, MAE+CLIP, SLIP, MIM->CLIP, ...) comes
    from ``image_text_model``; its checkpoint is loaded by the runner
    (``load_from`` / ``tools/test.py CONFIG CKPT``): a checkpoint of this
    project (``backbone.*``, ``head.*``, ``text_encoder.*``) or an open_clip
    ``CLIP`` state dict (``visual.*``, converted on load; its ``ln_pre`` needs
    ``backbone.pre_norm=True``).

    Args:
        image_text_model (dict | str | nn.Module): the pre-training model
            config, a config file whose ``model`` it is
            (``configs/rils/...py``), or a built model.
        class_names (list): the data set's classes in label order; each a name,
            a comma-separated string or a list of names (synonyms).
        templates (str | list[str]): prompt templates with ``{}``, or a
            clip-benchmark key (``'imagenet1k'``: CLIP's 80 ImageNet templates).
        last_block (str): ``'plain'``, ``'maskclip'``, ``'sclip'`` or
            ``'clearclip'`` (:mod:`.last_block`, each cited there).
        residual, ffn (bool, optional): override the variant's choice.
        logit_scale (float): multiplier before the softmax over prompts
            (SCLIP: 40; 65 on VOC21; 50 on Context60 and COCO-Object).
        prob_threshold (float): background threshold (needs
            ``background_index``). Defaults to 0 (off).
        area_threshold (float, optional): SCLIP's small-area filter.
        background_index (int, optional): label of the background class.
        test_cfg (dict): ``mode='slide'`` with ``crop_size`` / ``stride``
            (224 / 112 at the protocol's scale) or ``mode='whole'``.
    """

    def __init__(self,
                 image_text_model: Union[dict, str],
                 class_names: Sequence[Union[str, Sequence[str]]],
                 templates: Union[str, Sequence[str]] = 'imagenet1k',
                 last_block: str = 'plain',
                 residual: Optional[bool] = None,
                 ffn: Optional[bool] = None,
                 logit_scale: float = 40.0,
                 prob_threshold: float = 0.0,
                 area_threshold: Optional[float] = None,
                 background_index: Optional[int] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if data_preprocessor is None:
            data_preprocessor = dict(type='mmseg.SegDataPreProcessor', mean=CLIP_MEAN,
                                     std=CLIP_STD, bgr_to_rgb=True)
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if last_block not in LAST_BLOCK_VARIANTS:
            raise KeyError(f'last_block {last_block!r} is not one of '
                           f'{sorted(LAST_BLOCK_VARIANTS)}')
        self.queries, owner = parse_class_names(class_names)
        self.num_classes = len(class_names)
        if (prob_threshold > 0 or area_threshold) and background_index is None:
            raise ValueError('prob_threshold / area_threshold need background_index '
                             '(the label pixels below the threshold get)')
        if background_index is not None and not 0 <= background_index < self.num_classes:
            raise ValueError(f'background_index {background_index} is not a class index '
                             f'(0..{self.num_classes - 1})')
        self.register_buffer('query_class', torch.tensor(owner), persistent=False)
        self.register_buffer('zero_shot_weights', None, persistent=False)
        if isinstance(templates, str):
            from rils_mm.evaluation.benchmark_meta import load_templates
            templates = load_templates(templates)
        self.templates = list(templates)
        self.last_block, self.residual, self.ffn = last_block, residual, ffn
        self.logit_scale = float(logit_scale)
        self.prob_threshold = float(prob_threshold)
        self.area_threshold = area_threshold
        self.background_index = background_index
        self.test_cfg = ConfigDict(test_cfg or dict(mode='slide', crop_size=(224, 224),
                                                    stride=(112, 112)))
        self.align_corners = False
        self.out_channels = len(self.queries)

        if isinstance(image_text_model, torch.nn.Module):
            model = image_text_model  # already built (and loaded): its parts are shared
        else:
            with DefaultScope.overwrite_default_scope('mmpretrain'):
                model = PRETRAIN_MODELS.build(_model_cfg(image_text_model))
        for part in ('backbone', 'head', 'text_encoder'):
            if getattr(model, part, None) is None:
                raise KeyError(f'image_text_model {type(model).__name__} has no {part}: '
                               'zero-shot segmentation needs an image-text model')
        self.backbone, self.head, self.text_encoder = model.backbone, model.head, \
            model.text_encoder

    # ------------------------------------------------------------------ text side
    def encode_text(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text embeddings ``z^T = ||phi(h)||`` (Eq. 4)."""
        return self.head.embed_text(self.text_encoder(text_tokens))

    def text_embeddings(self) -> torch.Tensor:
        """(Q, D) prompt-ensemble embeddings of the queries, built once after
        the weights are loaded."""
        if self.zero_shot_weights is None:
            self.set_zero_shot_classifier(self.queries, self.templates)
        return self.zero_shot_weights

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Read an open_clip ``CLIP`` state dict too (converted in place), and
        forget the text embeddings of the previous weights."""
        self.zero_shot_weights = None
        keys = [k[len(prefix):] for k in state_dict if k.startswith(prefix)]
        if 'visual.conv1.weight' in keys:
            sd = {k: state_dict.pop(prefix + k) for k in keys}
            ours = _from_open_clip(sd)
            if 'visual.ln_pre.weight' in sd:
                if not isinstance(self.backbone.pre_norm, torch.nn.LayerNorm):
                    raise KeyError('the open_clip checkpoint has visual.ln_pre: build '
                                   'image_text_model with backbone.pre_norm=True')
                ours['backbone.pre_norm.weight'] = sd['visual.ln_pre.weight']
                ours['backbone.pre_norm.bias'] = sd['visual.ln_pre.bias']
            state_dict.update({prefix + k: v for k, v in ours.items()})
            keys = list(ours)
        if keys and not any(k.startswith('text_encoder.') for k in keys):
            raise KeyError('the checkpoint has no text tower (text_encoder.*): zero-shot '
                           'segmentation needs an image-text checkpoint (for MILAN, use its '
                           'CLIP teacher checkpoint)')
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ------------------------------------------------------------------ image side
    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """``||theta(f^k)||`` of every patch as a map (B, D, h, w) (Eq. 7)."""
        f, (h, w) = dense_patch_tokens(self.backbone, inputs, self.last_block,
                                       self.residual, self.ffn)
        z = F.normalize(self.head.image_projection(f).float(), dim=-1)
        return z.transpose(1, 2).reshape(z.shape[0], -1, h, w)

    def encode_decode(self, inputs: torch.Tensor, batch_img_metas: List[dict]) -> torch.Tensor:
        """Cosine scores (B, Q, H, W) of every query, upsampled to the input."""
        z = self.extract_feat(inputs)
        scores = torch.einsum('bdhw,qd->bqhw', z, self.text_embeddings().to(z))
        return resize(scores, size=inputs.shape[2:], mode='bilinear',
                      align_corners=self.align_corners)

    # mmseg's own sliding-window / whole-image inference and predict()
    inference = EncoderDecoder.inference
    slide_inference = EncoderDecoder.slide_inference
    whole_inference = EncoderDecoder.whole_inference
    predict = EncoderDecoder.predict

    def _forward(self, inputs: torch.Tensor, data_samples=None) -> torch.Tensor:
        return self.encode_decode(inputs, None)

    def loss(self, inputs, data_samples):
        raise NotImplementedError('ZeroShotSegmentor is training-free: it has no loss')

    # ------------------------------------------------------------------ labels
    def class_probabilities(self, scores: torch.Tensor) -> torch.Tensor:
        """(Q, H, W) query scores -> (K, H, W) class probabilities: softmax of
        ``logit_scale * scores`` over the queries, max over each class's names,
        and the area filter."""
        probs = F.softmax(self.logit_scale * scores.float(), dim=0)
        owner = self.query_class.tolist()
        out = probs[[owner.index(c) for c in range(self.num_classes)]]  # first names
        for c in {c for c in owner if owner.count(c) > 1}:  # synonyms: the best name
            out[c] = probs[[q for q, o in enumerate(owner) if o == c]].amax(0)
        if self.area_threshold:
            bg = self.background_index
            area = F.one_hot(out.argmax(0), self.num_classes).sum((0, 1)).float()
            fg = torch.ones_like(area, dtype=torch.bool)
            fg[bg] = False
            small = fg & (area <= self.area_threshold * area[fg].sum())
            out[small] = 0
        return out

    def labels(self, probs: torch.Tensor) -> torch.Tensor:
        """(K, H, W) class probabilities -> (1, H, W) labels (threshold to
        background)."""
        pred = probs.argmax(0, keepdim=True)
        if self.prob_threshold > 0:
            pred[probs.max(0, keepdim=True)[0] < self.prob_threshold] = self.background_index
        return pred

    def postprocess_result(self, seg_logits: torch.Tensor,
                           data_samples: Optional[List[SegDataSample]] = None):
        """Undo padding / flip, resize to the label size, then
        :meth:`class_probabilities` and :meth:`labels` (``seg_logits`` holds
        the class probabilities)."""
        if data_samples is None:
            data_samples = [SegDataSample() for _ in range(seg_logits.shape[0])]
            metas = [None] * len(data_samples)
        else:
            metas = [ds.metainfo for ds in data_samples]
        H, W = seg_logits.shape[2:]
        for i, (ds, meta) in enumerate(zip(data_samples, metas)):
            scores = seg_logits[i:i + 1]
            if meta is not None:
                left, right, top, bottom = meta.get(
                    'img_padding_size', meta.get('padding_size', [0] * 4))
                scores = scores[..., top:H - bottom, left:W - right]
                if meta.get('flip'):
                    scores = scores.flip(dims=(3, ) if meta.get(
                        'flip_direction') == 'horizontal' else (2, ))
                scores = resize(scores, size=meta['ori_shape'], mode='bilinear',
                                align_corners=self.align_corners, warning=False)
            probs = self.class_probabilities(scores[0])
            ds.set_data(dict(seg_logits=PixelData(data=probs),
                             pred_sem_seg=PixelData(data=self.labels(probs))))
        return data_samples

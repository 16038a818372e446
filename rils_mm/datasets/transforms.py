"""Data transforms for image-text pre-training.

* :class:`TokenizeText` turns a caption into CLIP BPE token ids with open_clip's
  tokenizer (the vocabulary ships inside the ``open_clip_torch`` wheel, nothing is
  downloaded).
* :class:`PackImageTextInputs` packs an image and its tokens into the
  ``{'inputs', 'data_samples'}`` layout the RILS model consumes.
* :func:`decode_image_bgr` decodes encoded image bytes exactly like mmcv's
  ``LoadImageFromFile(imdecode_backend='pillow')`` does (EXIF orientation applied,
  converted to 3-channel, BGR channel order, ``uint8``); the WebDataset reader uses it
  so that both readers hand the same kind of array to the rest of the pipeline.
"""
import io
from typing import Dict, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmpretrain.datasets.transforms.formatting import PackInputs
from mmpretrain.registry import TRANSFORMS
from mmpretrain.structures import DataSample
from PIL import Image, ImageOps

__all__ = [
    'InvalidCaptionError', 'TokenizeText', 'PackImageTextInputs',
    'decode_image_bgr', 'get_clip_tokenizer'
]

# One tokenizer per process, built on first use (building it parses the BPE
# merges file, which takes ~0.5 s; importing open_clip takes a few seconds).
_TOKENIZER = None


class InvalidCaptionError(ValueError):
    """Raised when a caption is not a non-empty string.

    Datasets catch it to skip the sample and report ``bad caption`` as reason.
    """


def get_clip_tokenizer():
    """Return the process-wide open_clip ``SimpleTokenizer`` (built lazily)."""
    global _TOKENIZER
    if _TOKENIZER is None:
        from open_clip.tokenizer import SimpleTokenizer
        _TOKENIZER = SimpleTokenizer()
    return _TOKENIZER


@TRANSFORMS.register_module()
class TokenizeText(BaseTransform):
    """Tokenise a caption with the CLIP BPE tokenizer of open_clip.

    The result equals ``open_clip.tokenize([caption], context_length)[0]``:
    ``[SOT, tokens..., EOT, 0, ...]``, truncated to ``context_length`` (the last
    kept position is then EOT).

    **Required Keys:** ``text_key``

    **Added Keys:** ``out_key`` (``torch.LongTensor`` of shape
    ``(context_length,)``)

    Args:
        context_length (int): Number of token positions. Defaults to 77.
        text_key (str): Key of the caption in the results dict.
            Defaults to 'text'.
        out_key (str): Key the tokens are written to. Defaults to
            'text_tokens'.

    Raises:
        InvalidCaptionError: If the caption is missing, not a ``str`` or only
            whitespace. Datasets catch this to skip the sample.
    """

    def __init__(self,
                 context_length: int = 77,
                 text_key: str = 'text',
                 out_key: str = 'text_tokens') -> None:
        if not isinstance(context_length, int) or context_length < 2:
            raise ValueError('context_length must be an int >= 2, got '
                             f'{context_length!r}')
        self.context_length = context_length
        self.text_key = text_key
        self.out_key = out_key

    def transform(self, results: dict) -> dict:
        """Tokenise ``results[text_key]`` into ``results[out_key]``."""
        caption = results.get(self.text_key, None)
        if not isinstance(caption, str) or not caption.strip():
            where = results.get('img_path', '<unknown sample>')
            raise InvalidCaptionError(
                f'caption under key {self.text_key!r} of {where} must be a '
                f'non-empty str, got {caption!r:.80}')
        tokens = get_clip_tokenizer()([caption],
                                      context_length=self.context_length)[0]
        results[self.out_key] = tokens.long()
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(context_length='
                f'{self.context_length}, text_key={self.text_key!r}, '
                f'out_key={self.out_key!r})')


@TRANSFORMS.register_module()
class PackImageTextInputs(BaseTransform):
    """Pack an image and its caption tokens for the RILS model.

    The image (``HWC`` numpy array, channel order untouched, normally BGR from
    ``LoadImageFromFile``) becomes a ``CHW`` tensor under ``inputs`` (same
    conversion as mmpretrain's ``PackInputs``); the tokens are stored as the data
    field ``text_tokens`` of a :class:`~mmpretrain.structures.DataSample` (so
    ``DataSample.to(device)`` moves them), and ``meta_keys`` that are present are
    stored as metainfo.

    **Required Keys:** ``img``, ``tokens_key``

    **Added Keys:** ``inputs`` (``torch.Tensor``), ``data_samples``
    (:obj:`DataSample`)

    Args:
        tokens_key (str): Key of the token tensor in the results dict.
            Defaults to 'text_tokens'.
        meta_keys (Sequence[str]): Keys copied into the metainfo when present.
            Defaults to ``('sample_idx', 'img_path', 'ori_shape', 'img_shape',
            'text', 'num_skipped', 'skip_reasons')``.
    """

    DEFAULT_META_KEYS = ('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                         'text', 'num_skipped', 'skip_reasons')

    def __init__(self,
                 tokens_key: str = 'text_tokens',
                 meta_keys: Sequence[str] = DEFAULT_META_KEYS) -> None:
        self.tokens_key = tokens_key
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        """Pack ``results`` into ``dict(inputs=..., data_samples=...)``."""
        if 'img' not in results:
            raise KeyError('PackImageTextInputs needs results["img"]; add a '
                           'LoadImageFromFile transform before it')
        if self.tokens_key not in results:
            raise KeyError(f'PackImageTextInputs needs results['
                           f'{self.tokens_key!r}]; add a TokenizeText '
                           'transform before it')
        inputs = PackInputs.format_input(results['img'])

        tokens = results[self.tokens_key]
        if not isinstance(tokens, torch.Tensor):
            tokens = torch.as_tensor(np.asarray(tokens))
        data_sample = DataSample()
        data_sample.set_field(
            tokens.long(), 'text_tokens', dtype=torch.Tensor)
        meta: Dict = {k: results[k] for k in self.meta_keys if k in results}
        data_sample.set_metainfo(meta)
        return dict(inputs=inputs, data_samples=data_sample)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(tokens_key={self.tokens_key!r}, '
                f'meta_keys={self.meta_keys})')


def decode_image_bgr(data: bytes) -> np.ndarray:
    """Decode encoded image bytes into a BGR ``uint8`` array of shape (H, W, 3).

    Mirrors ``mmcv.imfrombytes(data, flag='color', backend='pillow')``: the EXIF
    orientation is applied, non-RGB modes are converted to RGB ('LA' is
    composited on mmcv's canvas colour; 16-bit greyscale is scaled to 8 bits by
    ``>> 8`` like cv2 does, where PIL would clip it), then channels are flipped to
    BGR. The
    whole image is decoded here, so truncated files raise instead of being
    returned half grey.

    Args:
        data (bytes): Encoded image (JPEG, PNG, WebP, ...).

    Returns:
        np.ndarray: C-contiguous BGR image.

    Raises:
        OSError: (``PIL.UnidentifiedImageError`` included) if the bytes are not a
            decodable image.
    """
    with io.BytesIO(data) as buff:
        img = Image.open(buff)
        img = ImageOps.exif_transpose(img)
        if img.mode in ('I;16', 'I;16L', 'I;16B', 'I;16N', 'I'):
            # 16-bit greyscale: PIL's convert('RGB') clips to 255 (almost white);
            # scale to 8 bits as cv2 (LoadImageFromFile's default backend) does.
            grey = np.asarray(img).astype(np.int64) >> 8
            grey = np.clip(grey, 0, 255).astype(np.uint8)
            img = Image.fromarray(np.ascontiguousarray(grey)).convert('RGB')
        if img.mode != 'RGB':
            if img.mode == 'LA':
                rgba = img.convert('RGBA')
                img = Image.new('RGB', rgba.size, (124, 117, 104))
                img.paste(rgba, mask=rgba.split()[3])
            else:
                img = img.convert('RGB')
        array = np.asarray(img)
    if array.ndim != 3 or array.shape[2] != 3:
        raise OSError(f'decoded image has unexpected shape {array.shape}')
    return np.ascontiguousarray(array[:, :, ::-1])

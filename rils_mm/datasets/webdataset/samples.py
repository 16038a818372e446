"""Stage 3 of the WebDataset reader: from tar members to pipeline outputs.

A shard's members are grouped into raw samples (:func:`iter_shard_samples`), then
each raw sample passes a chain of small stages, each one callable that either
returns its result or raises :class:`SkipSample` with the reason (the first words
before ``:`` are its kind, e.g. ``'missing caption: ...'``):

1. :class:`SelectMembers` - the image and caption members;
2. :class:`DecodeCaption` - UTF-8, not empty, not too long;
3. :class:`DecodeImage` - the header's pixel count, then decoding (or the bytes
   for a pipeline that decodes itself);
4. :class:`RunPipeline` - the mmengine transforms.

:class:`SampleProcessor` runs the chain and books skipped samples in a
:class:`StreamState`, which reports them with the next good sample (its
``data_samples`` metainfo, see :func:`~rils_mm.datasets.utils.attach_skip_info`).
"""
import io
import logging
import tarfile
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log
from webdataset.tariterators import base_plus_ext

from ..transforms import decode_image_bgr
from ..utils import (
    attach_skip_info,
    check_image_pixels,
    describe_failure,
    short_message,
    skip_kind,
)
from .remote import ShardFetchError

__all__ = [
    'StreamState', 'SkipSample', 'iter_shard_samples', 'Pair', 'SelectMembers',
    'DecodeCaption', 'DecodeImage', 'RunPipeline', 'SampleProcessor'
]


class StreamState:
    """Per-``__iter__`` bookkeeping of skipped samples and stream progress."""

    def __init__(self, max_consecutive_failures: int) -> None:
        self.max_failures = max_consecutive_failures
        self.pending: int = 0  # bad samples since the last good one
        self.reasons: List[str] = []
        self.kinds: Counter = Counter()  # kinds of the pending ones
        self.recent: deque = deque(maxlen=5)  # the last reasons, for errors
        self.raw: int = 0  # samples that came out of the tar reader
        self.empty_shards: int = 0  # consecutive shards without samples

    def skip(self, reason: str) -> None:
        """Record a bad sample; raise if too many failed in a row."""
        self.pending += 1
        self.kinds[skip_kind(reason)] += 1
        if len(self.reasons) < 10:  # the first ones name the bad files; kinds count all
            self.reasons.append(reason)
        self.recent.append(reason)
        if self.pending > self.max_failures:
            last = '\n  '.join(self.recent)
            raise RuntimeError(
                f'WebImageTextDataset: {self.pending} consecutive samples '
                'failed; the shards look mostly broken (check the image / '
                f'caption members and image_keys / caption_key). Last '
                f'failures:\n  {last}')

    def take(self) -> Tuple[int, List[str], dict]:
        """Return and reset the skips accumulated since the last good one."""
        out = (self.pending, self.reasons, dict(self.kinds))
        self.pending, self.reasons, self.kinds = 0, [], Counter()
        return out

    def shard_problem(self, reason: str) -> None:
        """Log and count a problem of a shard (not of one sample)."""
        print_log(f'WebImageTextDataset: {reason}', logger='current',
                  level=logging.WARNING)
        self.skip(reason)


def _is_meta(name: str) -> bool:
    """Tar members webdataset ignores (``__key__``-style metadata)."""
    return '/' not in name and name.startswith('__') and name.endswith('__')


def iter_shard_samples(stream, url: str, state: StreamState) -> Iterator[dict]:
    """Group the members of one tar shard into raw samples.

    Like webdataset's ``tar_file_iterator`` + ``group_by_keys``, with honest
    accounting of what goes wrong (each counted once in ``state``):

    * a sample with the same member twice (``k.jpg, k.txt, k.jpg``) is skipped
      as a whole (``duplicate member``): which copy is right is unknown;
    * a key that comes back later in the shard (``k.*, j.*, k.*``) is skipped
      the second time (``duplicate key``): it is never read twice;
    * a shard cut off in the middle of a member (``truncated shard``) loses
      the incomplete sample, which is counted, and ends there; samples that
      were after the cut are not in the file and cannot be counted (the epoch
      then runs short, and the repeats that fill it are counted instead);
    * a file that is not a tar (``unreadable shard``) yields nothing;
    * a remote shard that breaks for good (its retries spent,
      :class:`~rils_mm.datasets.webdataset.remote.ShardFetchError`) ends like a
      truncated one, counted by the fault's kind (``connection reset``, ...).

    Yields:
        dict: ``{'__key__', '__url__', ext: bytes, ...}`` per complete sample.
    """
    seen = set()
    current: Optional[dict] = None
    bad: Optional[str] = None  # why `current` must be skipped

    def finish():
        if current is None:
            return None
        if bad:
            state.skip(bad)
            return None
        return current

    try:
        tar = tarfile.open(fileobj=stream, mode='r|*')
    except ShardFetchError as e:  # a remote shard that broke before its first member
        state.shard_problem(f'{e}; the shard is skipped')
        return
    except (tarfile.TarError, OSError, EOFError) as e:
        state.shard_problem(f'unreadable shard: {url} (not a tar file: {short_message(e)})')
        return
    member = None
    try:
        for member in tar:
            if not member.isreg() or _is_meta(member.name):
                continue
            key, ext = base_plus_ext(member.name)
            if key is None:
                continue
            ext = ext.lower()
            if current is None or key != current['__key__']:
                done = finish()
                if done is not None:
                    yield done
                current, bad = dict(__key__=key, __url__=url), None
                if key in seen:
                    bad = (f'duplicate key: {url}#{key} (appears again later in the shard; '
                           'read once)')
                seen.add(key)
            if ext in current and not bad:
                bad = f'duplicate member: {url}#{key}.{ext} (twice in one sample)'
            current[ext] = tar.extractfile(member).read()  # raises if truncated
            tar.members = []  # streaming: do not keep every TarInfo
    except (tarfile.TarError, OSError, EOFError) as e:
        name = getattr(member, 'name', '?')
        # a remote shard whose retries are spent is counted by its fault's kind
        if isinstance(e, ShardFetchError):
            kind, why = e.kind, str(e).partition(': ')[2]
        else:
            kind, why = 'truncated shard', short_message(e)
        reason = f'{kind}: {url} (cut off at member {name}: {why}; the rest of the shard is lost)'
        if current is not None and not bad:
            # The incomplete sample is the one lost sample that can be counted.
            print_log(f'WebImageTextDataset: {reason}', logger='current',
                      level=logging.WARNING)
            bad = f'{kind}: {url}#{current["__key__"]} (incomplete sample)'
        else:
            state.shard_problem(reason)
    done = finish()
    if done is not None:
        yield done


class SkipSample(Exception):
    """A stage refuses a sample; ``str(exc)`` is the skip reason."""


@dataclass
class Pair:
    """An image-caption pair on its way through the stages.

    Attributes:
        where (str): ``<url>#<key>``, the name in skip reasons and ``img_path``.
        img_key (str): The image member's extension.
        img_bytes (bytes): The encoded image.
        caption (bytes | str): The caption member, decoded by
            :class:`DecodeCaption`.
    """

    where: str
    img_key: str
    img_bytes: bytes
    caption: Union[bytes, str]


class SelectMembers:
    """Raw sample -> :class:`Pair`: its first present ``image_keys`` member and
    its ``caption_key`` member (``missing image`` / ``missing caption``)."""

    def __init__(self, image_keys: Sequence[str], caption_key: str) -> None:
        self.image_keys = tuple(image_keys)
        self.caption_key = caption_key

    def __call__(self, sample: dict) -> Pair:
        where = f"{sample.get('__url__')}#{sample.get('__key__')}"
        img_key = next((k for k in self.image_keys if k in sample), None)
        members = sorted(k for k in sample if not k.startswith('__'))
        if img_key is None:
            raise SkipSample(f'missing image: {where} (members: {members})')
        if self.caption_key not in sample:
            raise SkipSample(f'missing caption: {where} (members: {members})')
        return Pair(where, img_key, sample[img_key], sample[self.caption_key])


class DecodeCaption:
    """Caption bytes -> stripped text: refuses captions longer than
    ``max_caption_chars`` (checked on the bytes first, so 10 MB are never
    decoded), not UTF-8 or empty."""

    def __init__(self, max_caption_chars: int, caption_key: str = 'txt') -> None:
        self.max_caption_chars = max_caption_chars
        self.caption_key = caption_key

    def __call__(self, pair: Pair) -> Pair:
        raw, where, limit = pair.caption, pair.where, self.max_caption_chars
        if len(raw) > 4 * limit:  # before decoding 10 MB
            raise SkipSample(f'caption too long: {where} ({len(raw)} bytes, more than '
                             f'max_caption_chars={limit})')
        try:
            text = raw.decode('utf-8').strip()
        except UnicodeDecodeError as e:
            raise SkipSample(f'not UTF-8: {where}.{self.caption_key} (byte '
                             f'0x{raw[e.start]:02x} at offset {e.start})') from None
        if not text:
            raise SkipSample(f'empty caption: {where}')
        if len(text) > limit:
            raise SkipSample(f'caption too long: {where} ({len(text)} characters, more '
                             f'than max_caption_chars={limit})')
        pair.caption = text
        return pair


class DecodeImage:
    """:class:`Pair` -> the pipeline's input dict.

    Refuses images with more than ``max_image_pixels`` pixels from the header,
    then decodes like ``LoadImageFromFile(imdecode_backend='pillow')`` (``img``,
    ``img_shape``, ``ori_shape``); with ``decode=False`` hands the encoded bytes
    over as ``img_bytes`` instead (for a pipeline whose first transform decodes).
    Any decoding error is a skip (``corrupt image`` / ``image too large``).
    """

    def __init__(self, max_image_pixels: Optional[int], decode: bool = True) -> None:
        self.max_image_pixels = max_image_pixels
        self.decode = decode

    def __call__(self, pair: Pair) -> dict:
        name = f'{pair.where}.{pair.img_key}'
        try:
            check_image_pixels(io.BytesIO(pair.img_bytes), self.max_image_pixels, name)
            if not self.decode:
                return dict(img_bytes=pair.img_bytes, text=pair.caption, img_path=pair.where)
            img = decode_image_bgr(pair.img_bytes)
        except Exception as e:  # noqa: BLE001 - any undecodable image
            raise SkipSample(describe_failure(e, name)) from None
        return dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2],
                    text=pair.caption, img_path=pair.where)


class RunPipeline:
    """Pipeline input -> output; a failing transform or a ``None`` result is a
    skip (``pipeline error`` and the like, see
    :func:`~rils_mm.datasets.utils.describe_failure`)."""

    def __init__(self, pipeline: Callable[[dict], Optional[dict]]) -> None:
        self.pipeline = pipeline

    def __call__(self, results: dict) -> dict:
        where = results['img_path']
        try:
            out = self.pipeline(results)
        except Exception as e:  # noqa: BLE001 - bad sample, skip it
            raise SkipSample(describe_failure(e, where)) from None
        if out is None:
            raise SkipSample(describe_failure(None, where))
        return out


class SampleProcessor:
    """Run ``stages`` on a raw sample: the output with the skips booked since
    the last good sample attached, or ``None`` (the skip booked in ``state``)."""

    def __init__(self, stages: Sequence[Callable]) -> None:
        self.stages = list(stages)

    def __call__(self, sample: dict, state: 'StreamState') -> Optional[dict]:
        out = sample
        try:
            for stage in self.stages:
                out = stage(out)
        except SkipSample as skip:
            state.skip(str(skip))
            return None
        num_skipped, reasons, kinds = state.take()
        return attach_skip_info(out, num_skipped, reasons,
                                is_repeat=bool(sample.get('__repeat__')), kinds=kinds)

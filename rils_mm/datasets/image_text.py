"""Image-caption pairs listed in a CSV / TSV / JSONL annotation file.

Bad data is the rule, not the exception, in web-scale image-text corpora, so this
dataset never crashes on a single bad sample:

* at load time, rows with a missing image path, an empty / non-string caption, a
  caption longer than ``max_caption_chars`` or bytes that are not UTF-8 (the file is
  read with ``errors='surrogateescape'``, so one bad byte spoils only its row) are
  dropped, counted by kind (:attr:`ImageTextDataset.num_invalid_rows`,
  :attr:`ImageTextDataset.invalid_row_kinds`) and named by line; more than half of
  the rows being invalid is an error. CSV fields may be longer than the ``csv``
  module's default 128 KiB limit;
* at run time, a sample whose image is larger than ``max_image_pixels`` (checked
  from the header before decoding: decompression bombs), or whose pipeline fails
  (missing / corrupt image, caption the tokenizer rejects, pipeline returning
  ``None``) is replaced by the next index (``idx + 1``, wrapping),
  deterministically and without recursion. The returned sample's
  ``data_samples`` metainfo carries ``num_skipped``, ``skip_reasons``,
  ``skip_kinds`` and ``is_repeat`` (it stands in for a bad one) so that
  :class:`~rils_mm.engine.hooks.DataSkipCounterHook` counts distinct samples.

Random augmentations are a function of the sample, not of the process: once
:meth:`ImageTextDataset.set_epoch` was called (the
:class:`~rils_mm.engine.hooks.DatasetEpochHook` of the default runtime does,
with the run's seed), index ``idx`` of epoch ``e`` is transformed with python's,
numpy's and torch's generators seeded from ``(seed, e, idx)``. Its crop is then
the same with 0 or N data-loader workers, after worker restarts and after a
mid-epoch resume (worker generators would otherwise restart from the epoch's
start), and the training process's own streams (masking noise) do not move.
"""
import contextlib
import logging
import os.path as osp
from collections import Counter
from typing import ContextManager, Dict, List, Optional, Sequence, Union

from mmengine.logging import print_log
from mmpretrain.datasets.base_dataset import BaseDataset
from mmpretrain.registry import DATASETS
from torch.utils.data import get_worker_info

from ..utils.seeding import EpochSeeded, SharedEpoch, int_seed, seeded_generators
from .metadata import (
    IMG2DATASET_SUCCESS,
    img2dataset_image_path,
    is_parquet,
    metadata_files,
    parquet_columns,
    read_metadata_rows,
)
from .utils import (
    DEFAULT_MAX_IMAGE_PIXELS,
    attach_skip_info,
    check_image_pixels,
    describe_failure,
    resolve_image_root,
)

__all__ = ['ImageTextDataset']

@DATASETS.register_module()
class ImageTextDataset(EpochSeeded, BaseDataset):
    """Image-caption pairs from a CSV / TSV / JSONL / JSON / parquet annotation file.

    The format follows the file extension: ``.csv`` (comma separated, header
    row), ``.tsv`` (tab separated, header row, e.g. CC3M/img2dataset exports),
    ``.jsonl`` (one object per line), ``.json`` (a list of objects) or
    ``.parquet`` (read by record batches, only the needed columns; see
    :mod:`rils_mm.datasets.metadata`). Each row needs an image path
    (``img_key``) and a caption (``caption_key``); relative paths are joined to
    ``data_prefix`` / ``data_root`` / the annotation file's folder (first
    non-empty).

    img2dataset's outputs are read as they are: ``ann_file`` may be one of its
    ``NNNNN.parquet`` tables or its output folder (all ``*.parquet`` in name
    order). A parquet table without an ``img_key`` column but with img2dataset's
    ``key`` column is its ``--output_format files`` layout: the image of a row
    is ``NNNNN/<key>.<img_ext>``. Rows whose ``status_key`` column is not
    ``'success'`` (failed downloads) are dropped and counted.

    Every data info is ``dict(img_path=..., text=...)``, so a typical pipeline is
    ``LoadImageFromFile -> RandomResizedCrop -> TokenizeText ->
    PackImageTextInputs``.

    Failure handling (see module docstring): invalid rows are dropped at load
    time and counted in :attr:`num_invalid_rows`; failing samples are skipped to
    ``idx + 1`` at run time, and after ``max_refetch`` consecutive failures a
    ``RuntimeError`` names the last bad files. A returned sample reports only
    whether the *requested* index failed (``num_skipped`` 0 or 1 and its
    reason), so over an epoch every bad sample is counted exactly once.

    Args:
        ann_file (str): Annotation file (joined to ``data_root`` if relative).
        data_root (str): Root of ``ann_file`` and of relative image paths.
            Defaults to ''.
        img_key (str): Column / key holding the image path.
            Defaults to 'filepath'.
        caption_key (str): Column / key holding the caption.
            Defaults to 'caption'.
        pipeline (Sequence): Transform configs or callables. Defaults to ().
        max_refetch (int): Consecutive failing samples tolerated before raising.
            Defaults to 100.
        data_prefix (str | dict): Image folder (relative to ``data_root``) if it
            differs from ``data_root``. Defaults to ''.
        max_image_pixels (int, optional): Images with more pixels (width x
            height, read from the header) are skipped before decoding; ``None``
            disables the check. Defaults to PIL's refusal threshold,
            :data:`~rils_mm.datasets.utils.DEFAULT_MAX_IMAGE_PIXELS` (as
            :class:`~rils_mm.datasets.WebImageTextDataset`).
        max_caption_chars (int): Rows with longer captions are dropped (the
            tokenizer needs ~2 s per MiB and keeps only the first tokens).
            Defaults to 262144.
        augment_seed (int, optional): Base seed of the per-sample augmentation
            randomness. Defaults to None: the seed given to :meth:`set_epoch`
            (the run's seed, ``runner.seed``).
        status_key (str): Column with img2dataset's download status; rows whose
            status is not ``'success'`` are dropped and counted like invalid rows
            (kind: the status, e.g. ``failed_to_download``), but do not count
            towards the "more than half invalid" refusal. Files without the
            column are read as all successful. Defaults to 'status'.
        img_ext (str): Image extension of img2dataset's ``files`` layout (its
            ``--encode_format``). Defaults to 'jpg'.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``indices``, ``serialize_data``, ``lazy_init``, ``test_mode``...).
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 img_key: str = 'filepath',
                 caption_key: str = 'caption',
                 pipeline: Sequence = (),
                 max_refetch: int = 100,
                 data_prefix: Union[str, dict] = '',
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_caption_chars: int = 262144,
                 augment_seed: Optional[int] = None,
                 status_key: str = 'status',
                 img_ext: str = 'jpg',
                 **kwargs) -> None:
        if not isinstance(max_refetch, int) or max_refetch < 1:
            raise ValueError(f'max_refetch must be a positive int, got '
                             f'{max_refetch!r}')
        self.img_key = img_key
        self.caption_key = caption_key
        self.status_key = status_key
        self.img_ext = img_ext
        self.max_image_pixels = max_image_pixels
        self.max_caption_chars = max_caption_chars
        self.num_invalid_rows = 0
        #: ``{kind: count}`` of the rows dropped at load time.
        self.invalid_row_kinds: Dict[str, int] = {}
        #: The first few ``'<file>:<line>: <reason>'`` of them.
        self.invalid_row_examples: List[str] = []
        self.augment_seed = augment_seed
        #: The epoch and seed of :meth:`set_epoch`, seen by persistent workers too.
        self.shared_epoch = SharedEpoch()
        super().__init__(
            ann_file=ann_file,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            max_refetch=max_refetch,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read and validate the annotation file(s).

        Returns:
            list[dict]: ``dict(img_path=..., text=...)`` per valid row.
        """
        data_list: List[dict] = []
        invalid: List[tuple] = []  # (file, line, kind, why): bad rows
        undownloaded: List[tuple] = []  # the same, of rows whose status is not success
        for table in metadata_files(self.ann_file):
            self._load_table(table, data_list, invalid, undownloaded)

        dropped = sorted(invalid + undownloaded)
        total = len(data_list) + len(invalid)
        self.num_invalid_rows = len(dropped)
        self.invalid_row_kinds = dict(Counter(kind for _, _, kind, _ in dropped))
        self.invalid_row_examples = [
            f'{f}:{n}: {kind} ({why})' for f, n, kind, why in dropped[:5]]
        if invalid:
            examples = '; '.join(f'{osp.basename(f)} line {n}: {why}'
                                 for f, n, _, why in sorted(invalid)[:3])
            if 2 * len(invalid) > total:
                raise ValueError(
                    f'Annotation file {self.ann_file!r}: {len(invalid)} of '
                    f'{total} rows are invalid (more than half), e.g. '
                    f'{examples}. Check img_key={self.img_key!r} / '
                    f'caption_key={self.caption_key!r} and the file contents.')
            print_log(
                f'{self.ann_file}: skipped {len(invalid)} of {total} invalid '
                f'rows (e.g. {examples})',
                logger='current',
                level=logging.WARNING)
        if undownloaded:
            kinds = ', '.join(f'{k} {n}' for k, n in
                              Counter(k for _, _, k, _ in undownloaded).most_common())
            print_log(
                f'{self.ann_file}: skipped {len(undownloaded)} rows whose '
                f'{self.status_key!r} is not {IMG2DATASET_SUCCESS!r} ({kinds})',
                logger='current',
                level=logging.WARNING)
        if not data_list:
            raise ValueError(f'Annotation file {self.ann_file!r} has no rows'
                             + (f' with {self.status_key}={IMG2DATASET_SUCCESS!r}'
                                if undownloaded else ''))
        return data_list

    def _load_table(self, table: str, data_list: List[dict], invalid: List[tuple],
                    undownloaded: List[tuple]) -> None:
        """Append the rows of one table; see :meth:`load_data_list`."""
        # img2dataset's ``files`` layout: no path column, images at <table>/<key>.<ext>.
        by_key = (is_parquet(table) and self.img_key not in parquet_columns(table)
                  and 'key' in parquet_columns(table))
        img_key = 'key' if by_key else self.img_key
        rows, unparsable = read_metadata_rows(
            table, (img_key, self.caption_key), (self.status_key, 'error_message'))
        if by_key and not osp.isdir(osp.splitext(table)[0]):
            shard = osp.splitext(table)[0]
            hint = (f'; {shard}.tar exists: read the shards with WebImageTextDataset'
                    if osp.isfile(shard + '.tar') else '')
            raise FileNotFoundError(
                f'{table!r} has no {self.img_key!r} column, and its images are not in '
                f'img2dataset\'s files layout ({shard}/<key>.{self.img_ext}){hint}')
        root = resolve_image_root(table, self.data_root, self.img_prefix)
        invalid.extend((table, n, 'not UTF-8' if 'UTF-8' in why else 'invalid row', why)
                       for n, why in unparsable)
        for line_no, row in rows:
            status = row.get(self.status_key, IMG2DATASET_SUCCESS)
            if status is not None and status != IMG2DATASET_SUCCESS:
                undownloaded.append((table, line_no, str(status),
                                     str(row.get('error_message') or status)[:160]))
                continue
            img = row.get(img_key)
            caption = row.get(self.caption_key)
            if not isinstance(img, str) or not img.strip():
                invalid.append((table, line_no, 'missing image path',
                                f'missing {img_key!r}'))
                continue
            if not isinstance(caption, str) or not caption.strip():
                invalid.append((table, line_no, 'empty caption', f'empty or non-string '
                                f'{self.caption_key!r} ({caption!r:.40})'))
                continue
            if len(caption) > self.max_caption_chars:
                invalid.append((table, line_no, 'caption too long',
                                f'{self.caption_key!r} has {len(caption)} characters, more '
                                f'than max_caption_chars={self.max_caption_chars}'))
                continue
            img = img.strip()
            if by_key:
                img_path = img2dataset_image_path(table, img, self.img_ext)
            else:
                img_path = img if osp.isabs(img) else osp.join(root, img)
            data_list.append(dict(img_path=img_path, text=caption))

    def __getitem__(self, idx: int) -> dict:
        """Return sample ``idx``, or the next good one if it fails.

        Up to ``max_refetch`` consecutive indices (``idx, idx+1, ...`` mod
        ``len(self)``) are tried; the returned sample's ``data_samples``
        metainfo gets ``num_skipped`` (1 if ``idx`` itself failed, else 0) and
        ``skip_reasons`` (the reason ``idx`` failed).

        Raises:
            RuntimeError: If ``max_refetch`` consecutive samples fail.
        """
        if not self._fully_initialized:
            self.full_init()
        n = len(self)
        reasons: List[str] = []
        for attempt in range(min(self.max_refetch, n)):
            cur = (idx + attempt) % n
            exc: Optional[BaseException] = None
            try:
                with self._augment_rng(idx, attempt):
                    data = self.prepare_data(cur)
            except Exception as e:  # noqa: BLE001 - any bad sample is skipped
                data, exc = None, e
            if data is not None:
                # Report only the requested index's own failure: the sampler
                # requests every index once per epoch, so each bad sample is
                # then counted exactly once however long a bad run is. The
                # sample returned in its place is a repeat, not a distinct one.
                return attach_skip_info(
                    data, int(attempt > 0), reasons[:1], is_repeat=attempt > 0)
            reasons.append(
                describe_failure(exc,
                                 self.get_data_info(cur).get('img_path', '?')))
        last = '\n  '.join(reasons[-5:])
        raise RuntimeError(
            f'{type(self).__name__} ({self.ann_file}): {len(reasons)} '
            f'consecutive samples starting at index {idx} failed; the data '
            f'set looks mostly broken. Last failures:\n  {last}')

    def set_epoch(self, epoch: int, seed: Optional[int] = None) -> None:
        """Seed the random augmentations of ``epoch`` per sample (see the module
        docstring) from ``augment_seed``, else ``seed``, else 0."""
        self.shared_epoch.set(epoch, seed)

    def _augment_rng(self, idx: int, attempt: int) -> ContextManager:
        """Generators seeded for the ``attempt``-th try of sample ``idx`` (a
        stand-in for a bad sample gets other crops than its own turn)."""
        if not self.shared_epoch.is_set:  # no epoch known: the global generators, as they are
            return contextlib.nullcontext()
        epoch, seed = self.shared_epoch.epoch, self.shared_epoch.seed
        if self.augment_seed is not None:
            seed = self.augment_seed
        # In a data-loader worker the generators serve nothing else: no need to
        # put them back (saves ~0.2 ms a sample).
        return seeded_generators(int_seed('augment', seed, epoch, idx, attempt),
                                 restore=get_worker_info() is None)

    def prepare_data(self, idx: int):
        """Refuse too large images from their header, then run the pipeline."""
        img_path = self.get_data_info(idx).get('img_path')
        if isinstance(img_path, str) and self.max_image_pixels is not None:
            check_image_pixels(img_path, self.max_image_pixels)
        return super().prepare_data(idx)

    def extra_repr(self) -> List[str]:
        """Extra lines for ``repr``."""
        return super().extra_repr() + [
            f'Image key / caption key: \t{self.img_key} / {self.caption_key}',
            f'Invalid rows dropped: \t{self.num_invalid_rows}'
        ]

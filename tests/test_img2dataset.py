"""img2dataset's own outputs as training data: its parquet tables (failed downloads
skipped and counted), its ``files`` layout, and its WebDataset shards with a parquet
beside each."""
import io
import json
import os
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import rils_mm  # noqa: F401
from rils_mm.benchmark.metadata_rss import measure_read_rss, write_metadata_table
from rils_mm.datasets import ImageTextDataset, WebImageTextDataset
from rils_mm.datasets.metadata import (
    count_successes,
    iter_parquet_rows,
    read_metadata_rows,
    shard_num_samples,
)
from rils_mm.engine.hooks import DataSkipCounterHook
from rils_mm.testing import shrink_toy_model, write_tar_shard

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# img2dataset's schema: the input's columns, then the ones its downloader appends.
SCHEMA = pa.schema([
    pa.field('url', pa.string()), pa.field('caption', pa.string()),
    pa.field('key', pa.string()), pa.field('status', pa.string()),
    pa.field('error_message', pa.string()), pa.field('width', pa.int32()),
    pa.field('height', pa.int32()), pa.field('original_width', pa.int32()),
    pa.field('original_height', pa.int32())])
FAILED = {2: ('failed_to_download', 'HTTP Error 404: Not Found'),
          5: ('failed_to_resize', 'image file is truncated')}


def color(shard, i):
    return (40 * i % 256, 90 + 50 * shard, 200 - 20 * i)


def jpeg(rgb, size=(24, 20)):
    buf = io.BytesIO()
    Image.new('RGB', size, rgb).save(buf, format='JPEG', quality=95)
    return buf.getvalue()


def write_img2dataset(root, num_shards=2, per_shard=7, output_format='files'):
    """An img2dataset output folder as its writers make it (oom_shard_count 5,
    oom_sample_per_shard 4): ``00000.parquet`` with every input row, the successful
    samples in ``00000/KEY.{jpg,txt,json}`` or ``00000.tar``, ``00000_stats.json``."""
    os.makedirs(root, exist_ok=True)
    expected = []
    for shard in range(num_shards):
        name = str(shard).zfill(5)
        rows, members = [], []
        for i in range(per_shard):
            key = str(shard * 10**4 + i).zfill(9)
            caption = f'shard {shard} picture {i}'
            status, error = FAILED.get(i, ('success', None))
            ok = status == 'success'
            rows.append(dict(url=f'https://example.com/{key}.jpg', caption=caption, key=key,
                             status=status, error_message=error,
                             width=24 if ok else None, height=20 if ok else None,
                             original_width=48 if ok else None,
                             original_height=40 if ok else None))
            if ok:
                meta = json.dumps({k: v for k, v in rows[-1].items()}).encode()
                members += [(f'{key}.jpg', jpeg(color(shard, i))),
                            (f'{key}.txt', caption.encode()), (f'{key}.json', meta)]
                expected.append((key, caption, color(shard, i)))
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA),
                       osp.join(root, f'{name}.parquet'))
        if output_format == 'files':
            os.makedirs(osp.join(root, name))
            for member, data in members:
                with open(osp.join(root, name, member), 'wb') as f:
                    f.write(data)
        else:
            write_tar_shard(osp.join(root, f'{name}.tar'), members)
        with open(osp.join(root, f'{name}_stats.json'), 'w') as f:
            json.dump(dict(count=per_shard, successes=len(members) // 3), f)
    return expected


PIPELINE = [dict(type='LoadImageFromFile'), dict(type='TokenizeText'),
            dict(type='PackImageTextInputs')]


def test_parquet_table_skips_failed_downloads_and_counts_them(tmp_path):
    expected = write_img2dataset(str(tmp_path), num_shards=1)
    ds = ImageTextDataset(str(tmp_path / '00000.parquet'), pipeline=PIPELINE)
    assert len(ds) == 5  # 7 rows, 2 failed
    infos = [ds.get_data_info(i) for i in range(len(ds))]
    assert [d['text'] for d in infos] == [c for _, c, _ in expected]
    assert [d['img_path'] for d in infos] == [
        str(tmp_path / '00000' / f'{k}.jpg') for k, _, _ in expected]
    assert ds.num_invalid_rows == 2
    assert ds.invalid_row_kinds == {'failed_to_download': 1, 'failed_to_resize': 1}
    assert ds.invalid_row_examples[0].endswith(
        '00000.parquet:3: failed_to_download (HTTP Error 404: Not Found)')
    for i, (_, _, rgb) in enumerate(expected):  # the right image behind each caption
        img = ds[i]['inputs'].numpy()  # CHW, BGR as LoadImageFromFile
        assert np.abs(img.reshape(3, -1).mean(1)[::-1] - rgb).max() < 4
        assert ds[i]['data_samples'].num_skipped == 0

    # DataSkipCounterHook counts the failed rows as dropped at load time
    runner = SimpleNamespace(train_loop=SimpleNamespace(dataloader=SimpleNamespace(dataset=ds)))
    num, kinds, examples = DataSkipCounterHook._dropped(runner)
    assert num == 2 and kinds == ds.invalid_row_kinds and len(examples) == 2


def test_output_folder_reads_every_shard_table(tmp_path):
    expected = write_img2dataset(str(tmp_path / 'out'), num_shards=3)
    ds = ImageTextDataset(str(tmp_path / 'out'), pipeline=PIPELINE)
    assert [ds.get_data_info(i)['text'] for i in range(len(ds))] == [c for _, c, _ in expected]
    assert len(ds) == 15 and ds.num_invalid_rows == 6
    assert all(osp.isfile(ds.get_data_info(i)['img_path']) for i in range(len(ds)))


def test_all_failed_more_than_half_is_not_refused_but_none_is(tmp_path):
    # 2 of 3 rows failed to download: a poor download, not a broken file
    rows = [dict(url='u', caption=f'c{i}', key=f'{i:09d}', status=s, error_message=None,
                 width=None, height=None, original_width=None, original_height=None)
            for i, s in enumerate(['failed_to_download', 'success', 'failed_to_download'])]
    path = str(tmp_path / '00000.parquet')
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), path)
    os.makedirs(tmp_path / '00000')
    ds = ImageTextDataset(path)
    assert len(ds) == 1 and ds.num_invalid_rows == 2
    pq.write_table(pa.Table.from_pylist(rows[:1], schema=SCHEMA), path)
    with pytest.raises(ValueError, match=r"00000\.parquet.*no rows with status='success'"):
        ImageTextDataset(path)


def test_parquet_with_a_path_column_and_csv_with_status(tmp_path):
    Image.new('RGB', (8, 8)).save(tmp_path / 'a.jpg')
    table = pa.table({'filepath': ['a.jpg', 'a.jpg', 'a.jpg'],
                      'caption': ['one', 'two', ''], 'status': ['success', 'success', None]})
    pq.write_table(table, tmp_path / 'ann.parquet')
    ds = ImageTextDataset(str(tmp_path / 'ann.parquet'))
    assert [ds.get_data_info(i)['text'] for i in range(len(ds))] == ['one', 'two']
    assert ds.invalid_row_kinds == {'empty caption': 1}
    assert ds.get_data_info(0)['img_path'] == str(tmp_path / 'a.jpg')
    (tmp_path / 'ann.csv').write_text('filepath,caption,status\na.jpg,x,success\n'
                                      'a.jpg,y,failed_to_download\na.jpg,z,success\n')
    ds = ImageTextDataset(str(tmp_path / 'ann.csv'))
    assert [ds.get_data_info(i)['text'] for i in range(len(ds))] == ['x', 'z']
    assert ds.invalid_row_kinds == {'failed_to_download': 1}


def test_errors_name_the_file_and_the_column(tmp_path):
    pq.write_table(pa.table({'url': ['u'], 'text': ['t']}), tmp_path / 'm.parquet')
    with pytest.raises(KeyError, match=r"m\.parquet.*no column 'filepath'.*'url', 'text'"):
        ImageTextDataset(str(tmp_path / 'm.parquet'))
    with pytest.raises(KeyError, match=r"m\.parquet.*no column 'caption'"):
        ImageTextDataset(str(tmp_path / 'm.parquet'), img_key='url')
    (tmp_path / 'bad.parquet').write_bytes(b'not parquet')
    with pytest.raises(ValueError, match=r'bad\.parquet.*not a readable parquet'):
        read_metadata_rows(str(tmp_path / 'bad.parquet'), ('caption', ))
    with pytest.raises(ValueError, match=r"x\.txt.*'\.parquet'"):
        read_metadata_rows(str(tmp_path / 'x.txt'), ('caption', ))
    os.makedirs(tmp_path / 'empty_dir')
    with pytest.raises(FileNotFoundError, match=r'empty_dir.*no \*\.parquet'):
        ImageTextDataset(str(tmp_path / 'empty_dir'))
    # shards, not files: the message says which reader to use
    write_img2dataset(str(tmp_path / 'wds'), num_shards=1, output_format='webdataset')
    with pytest.raises(FileNotFoundError, match='00000.tar exists.*WebImageTextDataset'):
        ImageTextDataset(str(tmp_path / 'wds'))


def test_parquet_reader_reads_batches_of_only_the_asked_columns(tmp_path):
    path = str(tmp_path / 'big.parquet')
    write_metadata_table(path, 2500, row_group_size=1000)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    rows = list(iter_parquet_rows(path, ('status', 'key'), batch_size=300))
    assert [n for n, _ in rows] == list(range(1, 2501))
    assert rows[9][1] == {'status': 'failed_to_download', 'key': '000000009'}
    assert count_successes(path) == 2500 - 250


@pytest.mark.slow
def test_read_rss_benchmark_reads_every_row(tmp_path):
    path = str(tmp_path / 'big.parquet')
    write_metadata_table(path, 3000, row_group_size=1000)
    result = measure_read_rss(path)
    assert result['rows'] == 3000 and result['success'] == 2700
    assert result['caption_chars'] == sum(
        len(c) for c in pq.read_table(path, columns=['caption'])['caption'].to_pylist())
    assert result['peak_rss_mib'] >= result['baseline_rss_mib'] > 0
    assert 0 < result['arrow_peak_mib'] < 64


def test_webdataset_shards_with_parquet_beside_them(tmp_path):
    expected = write_img2dataset(str(tmp_path), num_shards=2, output_format='webdataset')
    pattern = str(tmp_path / '{00000..00001}.tar')
    assert shard_num_samples([str(tmp_path / '00000.tar'), str(tmp_path / '00001.tar')]) == 10
    ds = WebImageTextDataset(pattern, num_samples='auto', shuffle_buffer=0,
                             shuffle_shards=False, pipeline=PIPELINE[1:])
    assert ds.num_samples == 10 and len(ds) == 10
    out = list(ds)
    assert sorted(o['data_samples'].text for o in out) == sorted(c for _, c, _ in expected)
    assert not any(o['data_samples'].is_repeat or o['data_samples'].num_skipped for o in out)
    os.remove(tmp_path / '00001.parquet')
    with pytest.raises(FileNotFoundError, match=r'00001\.tar.*no metadata.*00001\.parquet'):
        WebImageTextDataset(pattern, num_samples='auto')
    with pytest.raises(ValueError, match='local .tar shards'):
        shard_num_samples(['https://example.com/00000.tar'])


@pytest.mark.slow
def test_img2dataset_shards_train_without_conversion(tmp_path):
    write_img2dataset(str(tmp_path / 'laion'), num_shards=4, per_shard=12,
                      output_format='webdataset')  # 10 pairs a shard
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy_wds.py'))
    dataset = cfg.train_dataloader.dataset
    dataset.urls = str(tmp_path / 'laion' / '{00000..00003}.tar')
    dataset.num_samples = 'auto'
    dataset.batch_size = cfg.train_dataloader.batch_size = 8
    dataset.pipeline[0].scale = 32
    shrink_toy_model(cfg.model)
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=100)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0,
                                end=5)]
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.train_dataloader.dataset.num_samples == 40
    assert runner.iter == 40 // 8
    assert osp.isfile(osp.join(cfg.work_dir, 'epoch_1.pth'))

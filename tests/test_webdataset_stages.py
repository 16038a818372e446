"""The WebDataset reader's named stages one by one (urls, shards, samples), the
epoch / RNG state module and the resume contract's generic per-rank mechanics."""
import io
import random
from unittest.mock import MagicMock

import numpy as np
import pytest
import torch
from PIL import Image

from rils_mm.datasets.webdataset.samples import (
    DecodeCaption,
    DecodeImage,
    Pair,
    RunPipeline,
    SampleProcessor,
    SelectMembers,
    SkipSample,
    StreamState,
)
from rils_mm.datasets.webdataset.shards import (
    epoch_shard_order,
    outputs_to_skip,
    per_rank_samples,
    read_shards,
    resumed_worker_role,
    split_shards,
    worker_share,
)
from rils_mm.datasets.webdataset.urls import expand_shard_urls, local_path
from rils_mm.engine.resume import RankStateHook, gather_rank_states
from rils_mm.testing import write_tar_shard
from rils_mm.utils.seeding import SharedEpoch, get_rng_states, int_seed, set_rng_states


def png(rgb=(10, 20, 30), size=(4, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new('RGB', size, rgb).save(buf, format='PNG')
    return buf.getvalue()


# -------------------------------------------------------------------- urls.py
def test_urls_expand_drop_missing_and_name_local_paths(tmp_path):
    a = write_tar_shard(tmp_path / 'a-0.tar', [])
    write_tar_shard(tmp_path / 'a-2.tar', [])
    assert expand_shard_urls(str(tmp_path / 'a-{0..2}.tar')) == [a, str(tmp_path / 'a-2.tar')]
    assert expand_shard_urls(f'{a}::{a}') == [a, a]
    with pytest.raises(FileNotFoundError, match='None of the 1 shards'):
        expand_shard_urls(str(tmp_path / 'gone.tar'))
    with pytest.raises(ValueError, match='non-empty'):
        expand_shard_urls([])
    assert local_path('file:///d/x.tar') == '/d/x.tar' and local_path('d/x.tar') == 'd/x.tar'
    assert local_path('https://h/x.tar') is None and local_path('pipe:cat x') is None


# ------------------------------------------------------------------ shards.py
def test_counts_split_and_order():
    assert per_rank_samples(50, 2, 4) == 24 and per_rank_samples(50, 2, None) == 25
    # 24 samples in batches of 4 over 4 workers: 6 batches -> 2, 2, 1, 1
    assert [worker_share(24, 4, w, 4) for w in range(4)] == [8, 8, 4, 4]
    urls = [f's{i}' for i in range(8)]
    assert split_shards(urls, 1, 2, 1, 2) == ['s3', 's7']
    with pytest.raises(ValueError, match='cannot be split over 2 rank'):
        split_shards(urls[:3], 1, 2, 1, 2)
    order = epoch_shard_order(urls, 0, 3, shuffle=True)
    assert sorted(order) == urls and order != urls
    assert order == epoch_shard_order(urls, 0, 3, shuffle=True)
    assert order != epoch_shard_order(urls, 0, 4, shuffle=True)
    assert epoch_shard_order(urls, 0, 3, shuffle=False) == urls


def test_resume_positions_follow_the_loaders_round_robin():
    # Worker shares in batches of 2: 3, 3 and 1 batches. The loader takes
    # batches 0,1,2 from workers 0,1,2, then 0,1 (worker 2 is exhausted), ...
    shares = [6, 6, 2]
    order = [0, 1, 2, 0, 1, 0, 1]
    for k in range(len(order) + 1):
        expected = [2 * order[:k].count(w) for w in range(3)]
        assert [outputs_to_skip(k, 2, shares, w) for w in range(3)] == expected, k
    assert outputs_to_skip(3, 4, [5, 5], 0) == 5  # capped at the share
    # resumed after 5 batches of 3 workers, worker 0 makes what worker 2 would have
    assert [resumed_worker_role(w, 3, 5) for w in range(3)] == [2, 0, 1]
    assert resumed_worker_role(1, 1, 5) == 1 and resumed_worker_role(1, 3, 0) == 1


def test_read_shards_counts_shards_the_opener_cannot_open(tmp_path):
    good = write_tar_shard(tmp_path / 'g.tar', [('k.png', png()), ('k.txt', b'cap')])

    def opener(url):  # the seam an HTTP reader with retries plugs into
        if 'remote' in url:
            raise TimeoutError('read timed out')
        return open(url, 'rb')

    state = StreamState(max_consecutive_failures=5)
    samples = list(read_shards(['https://remote/x.tar', good], state, open_fn=opener))
    assert [s['__key__'] for s in samples] == ['k'] and samples[0]['txt'] == b'cap'
    assert state.take()[1] == ['unreadable shard: https://remote/x.tar (TimeoutError: read '
                               'timed out)']
    with pytest.raises(RuntimeError, match='2 consecutive shards yielded no samples'):
        list(read_shards(['https://remote/a', 'https://remote/b'], StreamState(10),
                         empty_limit=1, open_fn=opener))


# ----------------------------------------------------------------- samples.py
def test_select_members_by_priority_or_skip():
    select = SelectMembers(('jpg', 'png'), 'txt')
    pair = select(dict(__url__='u', __key__='k', png=b'P', jpg=b'J', txt=b'c'))
    assert (pair.where, pair.img_key, pair.img_bytes, pair.caption) == ('u#k', 'jpg', b'J', b'c')
    with pytest.raises(SkipSample, match=r"^missing image: u#k \(members: \['json', 'txt'\]\)"):
        select(dict(__url__='u', __key__='k', txt=b'c', json=b'{}'))
    with pytest.raises(SkipSample, match=r"^missing caption: u#k \(members: \['png'\]\)"):
        select(dict(__url__='u', __key__='k', png=b'P'))


def test_decode_caption_checks_in_order():
    decode = DecodeCaption(max_caption_chars=5)
    assert decode(Pair('u#k', 'png', b'', b'  hi \n')).caption == 'hi'
    for raw, reason in [(b'x' * 21, 'caption too long: u#k (21 bytes'),
                        (b'\xffab', 'not UTF-8: u#k.txt (byte 0xff at offset 0)'),
                        (b' \n ', 'empty caption: u#k'),
                        ('héllo!'.encode(), 'caption too long: u#k (6 characters')]:
        with pytest.raises(SkipSample) as e:
            decode(Pair('u#k', 'png', b'', raw))
        assert str(e.value).startswith(reason), (raw, str(e.value))


def test_decode_image_decodes_or_hands_over_the_bytes():
    data = png((255, 0, 0))
    out = DecodeImage(max_image_pixels=100)(Pair('u#k', 'png', data, 'c'))
    assert list(out) == ['img', 'img_shape', 'ori_shape', 'text', 'img_path']
    assert out['img'].shape == (3, 4, 3) and out['img'][0, 0].tolist() == [0, 0, 255]  # BGR
    assert DecodeImage(100, decode=False)(Pair('u#k', 'png', data, 'c')) == dict(
        img_bytes=data, text='c', img_path='u#k')
    with pytest.raises(SkipSample, match=r'^image too large: u#k.png \(4 x 3 = 12 pixels'):
        DecodeImage(max_image_pixels=11)(Pair('u#k', 'png', data, 'c'))
    with pytest.raises(SkipSample, match=r'^corrupt image: u#k.png'):
        DecodeImage(max_image_pixels=None)(Pair('u#k', 'png', data[:20], 'c'))


def test_run_pipeline_and_the_processor_book_skips_with_the_next_good_one():
    def pipeline(results):
        if results['text'] == 'none':
            return None
        if results['text'] == 'boom':
            raise ValueError('bad')
        return dict(results, done=True)

    run = RunPipeline(pipeline)
    assert run(dict(img_path='u#k', text='x'))['done']
    with pytest.raises(SkipSample, match=r'^pipeline returned None: u#k'):
        run(dict(img_path='u#k', text='none'))
    with pytest.raises(SkipSample, match=r'^pipeline error: u#k \(ValueError: bad\)'):
        run(dict(img_path='u#k', text='boom'))

    process = SampleProcessor([SelectMembers(('png', ), 'txt'), DecodeCaption(100),
                               DecodeImage(None), run])
    state = StreamState(max_consecutive_failures=1)
    assert process(dict(__url__='u', __key__='a', txt=b'boom', png=png()), state) is None
    with pytest.raises(RuntimeError, match='2 consecutive samples failed'):
        process(dict(__url__='u', __key__='b', png=png()), state)
    state = StreamState(max_consecutive_failures=5)
    process(dict(__url__='u', __key__='a', txt=b'boom', png=png()), state)
    from mmpretrain.structures import DataSample
    good = SampleProcessor([lambda s: dict(data_samples=DataSample())])
    out = good(dict(__repeat__=True), state)
    meta = out['data_samples'].metainfo
    assert meta['num_skipped'] == 1 and meta['skip_kinds'] == {'pipeline error': 1}
    assert meta['is_repeat'] and state.take()[0] == 0


# ----------------------------------------------------------------- seeding.py
def test_shared_epoch_advances_without_set_epoch():
    epoch = SharedEpoch()
    assert [epoch.next_iteration() for _ in range(3)] == [0, 1, 2] and not epoch.is_set
    epoch.set(7, seed=3)
    assert epoch.next_iteration() == 7 and epoch.next_iteration() == 8
    assert (epoch.epoch, epoch.seed, epoch.is_set) == (7, 3, True)
    assert int_seed('a', 1) == int_seed('a', 1) != int_seed('a', 2)


def test_rng_states_round_trip():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = get_rng_states()
    after = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_states(state)
    assert (random.random(), np.random.rand(), torch.rand(1)) == after
    assert isinstance(state['numpy']['state']['key'], list)  # loads with weights_only


# ------------------------------------------------------------------ resume.py
class _Cursor(RankStateHook):
    """A per-rank participant as a new one would be written."""

    resume_key = 'cursor'

    def __init__(self, value):
        super().__init__()
        self.value, self.loaded = value, None

    def resume_state(self):
        return dict(value=self.value)

    def resume_fields(self, runner, checkpoint):
        return dict(epoch=3)

    def load_resume_state(self, state, saved):
        self.loaded = (state, dict(saved))


def test_a_new_per_rank_participant_needs_only_its_state():
    hook = _Cursor(5)
    runner = MagicMock(iter=9, _resume=True, hooks=[hook, object()])
    gather_rank_states(runner)  # by the checkpoint hook, on every rank
    ckpt = {}
    hook.value = 6  # changed after the gather: the gathered state is saved
    hook.before_save_checkpoint(runner, ckpt)
    assert ckpt['cursor'] == dict(world_size=1, ranks=[dict(value=5)], epoch=3)
    fresh = _Cursor(0)
    fresh.after_load_checkpoint(runner, ckpt)
    assert fresh.loaded == (dict(value=5), dict(epoch=3))
    fresh.loaded = None
    fresh.after_load_checkpoint(MagicMock(_resume=False), ckpt)  # load_from: nothing
    assert fresh.loaded is None
    with pytest.raises(RuntimeError, match=r'_Cursor: the checkpoint was written by 2 rank'):
        fresh.after_load_checkpoint(runner, dict(cursor=dict(world_size=2, ranks=[{}, {}])))
    fresh.after_load_checkpoint(runner, dict(cursor=dict(value=1)))  # rank 0's only
    assert fresh.loaded == (dict(value=1), {})

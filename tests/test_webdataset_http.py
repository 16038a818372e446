"""Shards streamed from a server: WebImageTextDataset over http:// and pipe:curl URLs
against a real HTTP server on 127.0.0.1 (rils_mm.testing.shard_server) that injects
faults. Nothing else on the network is contacted; every request loop is bounded in
requests (asserted from the server's counts) and in time (asserted with a clock)."""
import io
import shutil
import tarfile
import time
from collections import Counter
from unittest.mock import MagicMock

import numpy as np
import pytest
from mmengine.dataset import pseudo_collate
from mmengine.logging import MessageHub
from PIL import Image
from torch.utils.data import DataLoader

from rils_mm.datasets.transforms import get_clip_tokenizer
from rils_mm.datasets.webdataset import WebImageTextDataset
from rils_mm.datasets.webdataset.remote import (
    FetchPolicy,
    RetryingShardStream,
    ShardFetchError,
    ShardOpener,
    open_http,
)
from rils_mm.datasets.webdataset.samples import StreamState
from rils_mm.datasets.webdataset.shards import read_shards
from rils_mm.engine.hooks.data_skip_hook import DataSkipCounterHook
from rils_mm.testing import free_port, write_tar_shard
from rils_mm.testing.shard_server import ShardServer

PIPELINE = [dict(type='TokenizeText'), dict(type='PackImageTextInputs')]
#: small timeouts and waits: a fault costs at most ~0.3 s
FAST = dict(max_retries=2, backoff_base=0.01, backoff_max=0.04, connect_timeout=0.5,
            read_timeout=0.3)
N_SHARDS, PER_SHARD = 4, 8
#: curl straight to 127.0.0.1 (never through a proxy of the environment)
CURL = "pipe:curl -fsS --noproxy '*' --max-time 5"


@pytest.fixture(scope='module')
def shards(tmp_path_factory):
    """4 local shards of 8 samples (32 px noise PNGs, ~50 KB a shard) and a server
    of the same bytes."""
    folder = tmp_path_factory.mktemp('shards')
    rng = np.random.default_rng(0)

    def png():
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, 'PNG')
        return buf.getvalue()

    paths = [write_tar_shard(folder / f'train-{s:06d}.tar',
                             [(f'{s}{i:03d}.{ext}', data) for i in range(PER_SHARD)
                              for ext, data in (('png', png()), ('txt', f'c {s} {i}'.encode()))])
             for s in range(N_SHARDS)]
    files = {f'/train-{s:06d}.tar': open(p, 'rb').read() for s, p in enumerate(paths)}
    with ShardServer(files) as server:
        yield paths, server


@pytest.fixture
def server(shards):
    shards[1].reset()
    shards[1].ranges = True
    return shards[1]


def paths_of(server):
    """The shards' paths on ``server``."""
    return [f'/train-{s:06d}.tar' for s in range(N_SHARDS)]


def raw(urls, **policy):
    """(key, png bytes, txt bytes) of every raw sample, the state and the seconds."""
    state, start = StreamState(100), time.monotonic()
    out = [(s['__key__'], s['png'], s['txt'])
           for s in read_shards(urls, state, open_fn=ShardOpener(**dict(FAST, **policy)))]
    return out, state, time.monotonic() - start


def comparable(samples):
    """What a sample is, apart from its URL."""
    return [(s['data_samples'].img_path.split('#')[1], s['data_samples'].text,
             s['inputs'].numpy().tobytes()) for s in samples]


# ------------------------------------------------------------------- URL forms
def test_brace_pattern_list_and_pipe_read_like_local_files(shards, server):
    get_clip_tokenizer()
    paths = shards[0]
    kw = dict(num_samples=N_SHARDS * PER_SHARD, pipeline=PIPELINE, shuffle_buffer=8, seed=3)
    local = WebImageTextDataset(paths, **kw)
    local.set_epoch(1)
    expected = comparable(list(local))
    pattern = server.url('/train-{000000..000003}.tar')
    forms = {'brace pattern': pattern,
             'list': [server.url(p) for p in paths_of(server)]}
    assert shutil.which('curl'), 'the pipe: test needs curl'
    forms['pipe:curl'] = f'{CURL} {pattern}'
    for name, urls in forms.items():
        server.reset()
        ds = WebImageTextDataset(urls, fetch=FAST, **kw)
        assert len(ds.urls) == N_SHARDS, name
        ds.set_epoch(1)
        assert comparable(list(ds)) == expected, name
        assert server.requests == Counter({p: 1 for p in paths_of(server)}), name


def test_fetch_options_are_checked():
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['retries'\]"):
        ShardOpener(retries=3)
    with pytest.raises(ValueError, match='read_timeout must be a number > 0'):
        FetchPolicy(read_timeout=0)
    with pytest.raises(ValueError, match='max_retries must be an int >= 0'):
        FetchPolicy(max_retries=-1)
    # bounded exponential backoff: base * 2**k, capped
    assert [FetchPolicy(backoff_base=0.5, backoff_max=3).delay(k) for k in range(5)] == \
        [0.5, 1.0, 2.0, 3, 3]


# ----------------------------------------------------------- retried: nothing lost
@pytest.mark.parametrize('ranges', [True, False], ids=['range', 'no-range'])
def test_transient_faults_are_retried_at_the_byte_reached(shards, server, ranges):
    server.ranges = ranges  # without Range support the bytes read are read again, dropped
    expected, _, _ = raw(shards[0])
    p0, p1, p2, p3 = paths_of(server)
    server.fail(p0, ('status', 500))            # 500, then success
    server.fail(p1, ('reset', 20000))           # reset in the middle of the shard
    server.fail(p2, ('stall', 15000, 1.0))      # stalled past read_timeout
    server.fail(p3, ('status', 503))
    server.fail(p3, ('reset', 30000))           # two faults in one shard
    got, state, seconds = raw([server.url(p) for p in paths_of(server)])
    assert got == expected  # every sample once, in order, bytes equal
    assert state.kinds == Counter() and state.pending == 0
    assert server.requests == Counter({p0: 2, p1: 2, p2: 2, p3: 3})
    for path in (p1, p2):  # the retry continued at the byte it had reached
        first, again = server.ranges_asked[path]
        assert first == 0 and 10000 <= again <= 20000
    assert seconds < 3  # one stall (0.3 s) and a few 10-40 ms waits


def test_waits_between_retries_are_the_backoff(server):
    server.fail(paths_of(server)[0], ('status', 500), always=True)
    waits = []
    policy = FetchPolicy(max_retries=4, backoff_base=0.01, backoff_max=0.05)
    with pytest.raises(ShardFetchError, match=r'^http 500: .*gave up after 5 request\(s\)'):
        RetryingShardStream(server.url(paths_of(server)[0]), open_http, policy,
                            sleep=waits.append)
    assert waits == [0.01, 0.02, 0.04, 0.05]
    assert server.requests[paths_of(server)[0]] == 5


# ------------------------------------------------------- given up: skipped, counted
def test_lasting_faults_skip_the_shard_or_its_rest_counted_by_kind(shards, server):
    local = {}
    for path in shards[0]:
        local[path] = raw([path])[0]
    p0, p1, p2, p3 = paths_of(server)
    server.fail(p0, ('status', 404), always=True)
    server.fail(p1, ('reset', 20000), always=True)  # RST: what was in flight may be lost
    server.fail(p2, ('stall', 15000, 1.0), always=True)
    server.fail(p3, ('status', 500), always=True)
    refused = f'http://127.0.0.1:{free_port()}/train-000000.tar'  # nothing listens
    closed = server.url(p0) + '?closed'  # the same bytes, closed cleanly at byte 20000
    server.files[p0 + '?closed'] = server.files[p0]
    server.fail(p0 + '?closed', ('close', 20000), always=True)
    urls = [refused] + [server.url(p) for p in paths_of(server)] + [closed, shards[0][0]]
    got, state, seconds = raw(urls)
    assert state.kinds == Counter({'connection refused': 1, 'http 404': 1,
                                   'connection reset': 2, 'stalled transfer': 1,
                                   'http 500': 1})
    # 404 is not asked again; the other faults 1 + max_retries times
    assert server.requests == Counter({p0: 1, p1: 3, p2: 3, p3: 3, p0 + '?closed': 3})
    # a shard broken mid-way keeps the samples it yielded (a prefix, each once)
    first = len(local[shards[0][0]])
    prefix1 = [s for s in got if s[0].startswith('1')]
    prefix2 = [s for s in got if s[0].startswith('2')]
    prefix0 = got[len(prefix1) + len(prefix2):-first]
    assert len(prefix1) < PER_SHARD and prefix1 == local[shards[0][1]][:len(prefix1)]
    assert 1 <= len(prefix2) < PER_SHARD and prefix2 == local[shards[0][2]][:len(prefix2)]
    # closed cleanly at byte 20000: the samples whose members end before it
    assert prefix0 == local[shards[0][0]][:samples_before(server.files[p0], 20000)]
    # the last (local) shard is read after them all, whole
    assert got == prefix1 + prefix2 + prefix0 + local[shards[0][0]]
    assert sum('incomplete sample' in r for r in state.reasons) >= 2
    assert seconds < 4  # three stalls of 0.3 s and short waits


def samples_before(data: bytes, end: int) -> int:
    """Samples of tar ``data`` complete in its first ``end`` bytes whose next
    sample's first header is there too (the reader yields a sample when the next
    key starts)."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    keys, count = [m.name.split('.')[0] for m in members], 0
    for i, m in enumerate(members[1:], 1):
        if keys[i] != keys[i - 1] and m.offset + 512 <= end:
            count += 1
    return count


def test_pipe_curl_faults_are_retried_and_counted(shards, server):
    p0, p1 = paths_of(server)[:2]
    server.fail(p0, ('status', 500))
    server.fail(p1, ('status', 404), always=True)
    urls = [f'{CURL} {server.url(p)}' for p in (p0, p1)]
    got, state, seconds = raw(urls)
    assert got == raw(shards[0][:1])[0]
    assert state.kinds == Counter({'http error': 1})  # curl -f: exit 22
    assert server.requests == Counter({p0: 2, p1: 3})
    assert seconds < 5


# --------------------------------------------------- the counts reach the hook
def test_skips_reach_data_skip_counter_hook(shards, server):
    get_clip_tokenizer()
    p0, p1 = paths_of(server)[:2]
    server.fail(p0, ('status', 404), always=True)
    server.fail(p1, ('close', 20000), always=True)
    readable = 2 * PER_SHARD + samples_before(server.files[p1], 20000)
    ds = WebImageTextDataset(server.url('/train-{000000..000003}.tar'),
                             num_samples=readable, pipeline=PIPELINE,
                             shuffle_buffer=0, shuffle_shards=False, fetch=FAST)
    ds.set_epoch(0)
    samples = list(ds)
    assert len(samples) == readable
    hook = DataSkipCounterHook(min_samples=10 ** 6)
    runner = MagicMock()
    runner.epoch = 0
    runner.message_hub = MessageHub.get_instance('http_skip_counts')
    runner.train_loop.dataloader.dataset = ds
    hook.before_train_epoch(runner)
    for i in range(0, len(samples), 4):
        hook.after_train_iter(runner, i // 4, pseudo_collate(samples[i:i + 4]))
    hook.after_train_epoch(runner)
    hub = runner.message_hub
    assert hub.get_info('train/data_skipped_by_kind') == {'http 404': 1, 'connection reset': 1}
    assert hub.get_info('train/data_skipped') == 2
    assert hub.get_info('train/data_used') == readable
    assert hub.get_info('train/data_repeats') == 0
    line = runner.logger.info.call_args[0][0]
    assert 'skipped by kind: ' in line and 'http 404 1' in line and 'connection reset 1' in line


# ----------------------------------------------------------------- exact resume
@pytest.mark.parametrize('num_workers', [0, pytest.param(2, marks=pytest.mark.slow)])
def test_mid_epoch_resume_over_http_is_the_local_position(shards, server, num_workers):
    get_clip_tokenizer()

    def batches(urls, skip=None, **kw):
        ds = WebImageTextDataset(urls, num_samples=N_SHARDS * PER_SHARD, batch_size=4,
                                 shuffle_buffer=8, pipeline=PIPELINE, seed=1, **kw)
        ds.set_epoch(2)
        if skip:
            ds.skip_batches(skip, 4, epoch=2)
        return list(DataLoader(ds, batch_size=4, num_workers=num_workers,
                               collate_fn=comparable))

    full = batches(shards[0])
    assert len(full) == N_SHARDS * PER_SHARD // 4
    p0, p2 = paths_of(server)[0], paths_of(server)[2]
    for skip in (3, 5):
        server.reset()
        server.fail(p0, ('reset', 20000))  # retried faults do not move the position
        server.fail(p2, ('status', 502))
        resumed = batches(server.url('/train-{000000..000003}.tar'), skip=skip, fetch=FAST)
        assert resumed == full[skip:]
        assert server.requests[p0] == 2 and server.requests[p2] == 2

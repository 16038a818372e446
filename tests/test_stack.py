"""The OpenMMLab / CLIP stack imports, in the supported ranges (and as locked), and its
compiled ops are right.

mmcv's C++ ops are checked on CPU against answers worked out independently
in this file (a plain-python NMS loop, and RoIAlign on a feature map that is a
linear function of the pixel coordinates, where bilinear sampling is exact).
"""
import importlib
import itertools
import os
from importlib import metadata

import numpy as np
import pytest
import torch
from packaging.utils import canonicalize_name

STACK_MODULES = [
    'torch', 'torchvision', 'mmengine', 'mmcv', 'mmcv.ops', 'mmpretrain',
    'mmpretrain.models', 'mmdet', 'mmdet.models', 'mmseg', 'mmseg.models',
    'open_clip', 'webdataset', 'clip_benchmark', 'sklearn'
]


# ---------------------------------------------------------------------------
# Imports and versions
# ---------------------------------------------------------------------------
@pytest.mark.parametrize('name', STACK_MODULES)
def test_stack_imports(name):
    importlib.import_module(name)


# The supported ranges are requirements/{torch,runtime,mmcv_lite,optional,tests}.txt; the
# tested environment's exact versions are requirements/lock.txt (what tools/setup_env.sh
# installs); requirements/lowest.txt the lowest versions (tools/run_tests_lowest_torch.sh).
REQ_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       'requirements')
RANGE_FILES = ('torch.txt', 'runtime.txt', 'mmcv_lite.txt', 'optional.txt', 'tests.txt')


def _requirements(name):
    from packaging.requirements import Requirement
    reqs = {}
    with open(os.path.join(REQ_DIR, name)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line and not line.startswith('-'):
                req = Requirement(line)
                reqs[canonicalize_name(req.name)] = req
    return reqs


def _ranges():
    reqs = {}
    for name in RANGE_FILES:
        reqs.update(_requirements(name))
    return reqs


def _pins(name):
    pins = {}
    for key, req in _requirements(name).items():
        (spec, ) = req.specifier  # exactly one '==' each
        assert spec.operator == '==', f'{name}: {req} is not an exact pin'
        pins[key] = spec.version
    return pins


def _installed(key):
    if key == 'mmcv-lite':  # the full setup has mmcv with ops in its place
        for dist in ('mmcv', 'mmcv-lite'):
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                pass
    return metadata.version(key)


def test_supported_ranges_are_ranges_with_torch_2_4_to_2_14():
    ranges = _ranges()
    torch_range = ranges['torch'].specifier
    for version in ('2.4.0', '2.4.1', '2.11.0', '2.14.1'):
        assert torch_range.contains(version), (version, torch_range)
    assert not torch_range.contains('2.3.1') and not torch_range.contains('2.15.0')
    assert ranges['mmcv-lite'].specifier.contains('2.1.0')
    assert not ranges['mmcv-lite'].specifier.contains('2.2.0')  # mmdet 3.3: mmcv < 2.2
    assert not ranges['transformers'].specifier.contains('5.0.0')
    exact = [str(r) for r in ranges.values() if any(s.operator == '==' for s in r.specifier)]
    assert exact == [], f'exact pins belong in requirements/lock.txt: {exact}'


@pytest.mark.parametrize('pins', ['lock.txt', 'lowest.txt'])
def test_pins_lie_in_the_supported_ranges(pins):
    ranges, pinned = _ranges(), _pins(pins)
    if pins == 'lock.txt':
        assert set(ranges) <= set(pinned), set(ranges) - set(pinned)
    for key, version in pinned.items():
        if key in ranges:
            assert ranges[key].specifier.contains(version), (pins, key, version)


def test_installed_stack_is_in_range_and_as_locked():
    """Every supported package is installed in its range; unless the environment was
    set up with RILS_MM_LOCK=none (ranges only), at exactly the locked version."""
    lock = _pins('lock.txt')
    locked = os.environ.get('RILS_MM_LOCK', '') != 'none'
    for key, req in _ranges().items():
        version = _installed(key)
        assert req.specifier.contains(version), (key, version, str(req.specifier))
        if locked:
            assert version.split('+')[0] == lock[key], (key, version, lock[key])
    assert torch.__version__.split('+')[0] == metadata.version('torch').split('+')[0]


def test_mmcv_ops_are_compiled():
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['nms', 'roi_align_forward'])
    assert callable(ext.nms)


# ---------------------------------------------------------------------------
# mmcv.ops.nms
# ---------------------------------------------------------------------------
# Worked out by hand (IoU with offset=0, boxes suppressed when IoU > 0.5):
#   4 (0.95) kept
#   0 (0.90) kept: no overlap with 4
#   1 (0.80) dropped: IoU(1, 0) = 81 / 119 = 0.68
#   2 (0.70) kept: IoU(2, 0) = 40 / 100 = 0.40
#   3 (0.60) dropped: IoU(3, 4) = 90 / 110 = 0.82
#   5 (0.50) kept: IoU(5, 0) = 50 / 150 = 0.33, IoU(5, 2) = 20 / 120 = 0.17
NMS_BOXES = [
    [0., 0., 10., 10.],
    [1., 1., 11., 11.],
    [0., 0., 10., 4.],
    [20., 20., 30., 30.],
    [21., 20., 31., 30.],
    [5., 0., 15., 10.],
]
NMS_SCORES = [0.9, 0.8, 0.7, 0.6, 0.95, 0.5]
NMS_KEEP_BY_HAND = [4, 0, 2, 5]


def _iou(a, b):
    iw = max(0., min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0., min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    return inter / (area_a + area_b - inter)


def _greedy_nms(boxes, scores, iou_threshold):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        if all(_iou(boxes[i], boxes[k]) <= iou_threshold for k in keep):
            keep.append(i)
    return keep


def test_reference_nms_matches_hand_worked_answer():
    assert _greedy_nms(NMS_BOXES, NMS_SCORES, 0.5) == NMS_KEEP_BY_HAND


@pytest.mark.parametrize('as_numpy', [False, True])
def test_mmcv_nms_known_answer(as_numpy):
    from mmcv.ops import nms
    boxes = np.array(NMS_BOXES, dtype=np.float32)
    scores = np.array(NMS_SCORES, dtype=np.float32)
    if not as_numpy:
        boxes, scores = torch.from_numpy(boxes), torch.from_numpy(scores)
    dets, inds = nms(boxes, scores, iou_threshold=0.5)
    inds = np.asarray(inds).tolist()
    dets = np.asarray(dets)
    assert inds == NMS_KEEP_BY_HAND
    assert dets.shape == (len(NMS_KEEP_BY_HAND), 5)
    np.testing.assert_allclose(dets[:, :4],
                               np.array(NMS_BOXES)[NMS_KEEP_BY_HAND])
    np.testing.assert_allclose(
        dets[:, 4],
        np.array(NMS_SCORES)[NMS_KEEP_BY_HAND],
        rtol=0,
        atol=1e-6)


def test_mmcv_nms_random_boxes_match_reference():
    from mmcv.ops import nms
    gen = torch.Generator().manual_seed(0)
    # Crowded boxes, so that every threshold suppresses some of them.
    xy = torch.rand(40, 2, generator=gen) * 20
    wh = torch.rand(40, 2, generator=gen) * 10 + 10
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.rand(40, generator=gen)
    for thr in (0.3, 0.5, 0.7):
        _, inds = nms(boxes, scores, iou_threshold=thr)
        expected = _greedy_nms(boxes.tolist(), scores.tolist(), thr)
        assert 0 < len(expected) < len(boxes)
        assert inds.tolist() == expected


# ---------------------------------------------------------------------------
# mmcv.ops.roi_align
# ---------------------------------------------------------------------------
# Feature map: channel k of image n is  A[k] * x + B[k] * y + C[k] + 10 * n,
# with x the column and y the row index. Bilinear interpolation of a linear
# function is exact inside [0, W-1] x [0, H-1], and the average over a bin's
# regular sample grid is the function at the grid's mean, i.e. the bin centre.
FEAT_H, FEAT_W = 16, 20
COEF_A = (0.5, -1.5, 0.0)
COEF_B = (2.0, 0.25, -1.0)
COEF_C = (1.0, 3.0, 0.5)


def _linear_features(num_images=2):
    ys, xs = torch.meshgrid(
        torch.arange(FEAT_H, dtype=torch.float64),
        torch.arange(FEAT_W, dtype=torch.float64),
        indexing='ij')
    maps = []
    for n in range(num_images):
        maps.append(
            torch.stack([
                a * xs + b * ys + c + 10 * n
                for a, b, c in zip(COEF_A, COEF_B, COEF_C)
            ]))
    return torch.stack(maps).float()


def _expected_roi_align(rois, output_size, spatial_scale, aligned):
    """Value of the linear feature map at every bin centre."""
    out_h, out_w = output_size
    offset = 0.5 if aligned else 0.0
    out = torch.zeros(
        len(rois), len(COEF_A), out_h, out_w, dtype=torch.float64)
    for r, (n, x1, y1, x2, y2) in enumerate(rois):
        start_x = x1 * spatial_scale - offset
        start_y = y1 * spatial_scale - offset
        roi_w = x2 * spatial_scale - offset - start_x
        roi_h = y2 * spatial_scale - offset - start_y
        if not aligned:  # legacy mode clamps the RoI size to >= 1
            roi_w, roi_h = max(roi_w, 1.), max(roi_h, 1.)
        bin_w, bin_h = roi_w / out_w, roi_h / out_h
        for ph, pw in itertools.product(range(out_h), range(out_w)):
            cx = start_x + (pw + 0.5) * bin_w
            cy = start_y + (ph + 0.5) * bin_h
            # Every sample point stays inside the map, so no clamping.
            assert 0 <= start_x and start_x + roi_w <= FEAT_W - 1
            assert 0 <= start_y and start_y + roi_h <= FEAT_H - 1
            for k, (a, b, c) in enumerate(zip(COEF_A, COEF_B, COEF_C)):
                out[r, k, ph, pw] = a * cx + b * cy + c + 10 * n
    return out.float()


# (batch index, x1, y1, x2, y2) in input-image coordinates (stride 2).
LINEAR_ROIS = [
    [0., 4., 6., 20., 18.],
    [1., 10., 2., 30., 26.],
    [1., 3., 3., 8.5, 13.],
    [0., 7., 5., 7.5, 5.5],  # smaller than one feature pixel
]


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2, 3])
def test_mmcv_roi_align_linear_map_is_exact(aligned, sampling_ratio):
    from mmcv.ops import RoIAlign, roi_align
    feats = _linear_features()
    rois = torch.tensor(LINEAR_ROIS)
    output_size, spatial_scale = (3, 4), 0.5
    expected = _expected_roi_align(LINEAR_ROIS, output_size, spatial_scale,
                                   aligned)
    out = roi_align(feats, rois, output_size, spatial_scale, sampling_ratio,
                    'avg', aligned)
    assert out.shape == (len(LINEAR_ROIS), len(COEF_A), 3, 4)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)
    module = RoIAlign(
        output_size,
        spatial_scale=spatial_scale,
        sampling_ratio=sampling_ratio,
        aligned=aligned)
    torch.testing.assert_close(module(feats, rois), out, rtol=0, atol=0)


def test_linear_map_oracle_agrees_with_torchvision():
    """Guards the analytic oracle itself (independent of mmcv)."""
    from torchvision.ops import roi_align as tv_roi_align
    feats = _linear_features()
    rois = torch.tensor(LINEAR_ROIS)
    for aligned in (True, False):
        expected = _expected_roi_align(LINEAR_ROIS, (3, 4), 0.5, aligned)
        out = tv_roi_align(feats, rois, (3, 4), 0.5, 2, aligned)
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('sampling_ratio', [0, 2])
def test_mmcv_roi_align_matches_torchvision(aligned, sampling_ratio):
    from mmcv.ops import roi_align
    from torchvision.ops import roi_align as tv_roi_align
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 7, 9, generator=gen)
    # Includes RoIs crossing the border and a degenerate one.
    rois = torch.tensor([
        [0., 1.0, 2.0, 9.0, 11.0],
        [1., -3.0, -2.0, 6.0, 5.0],
        [0., 10.0, 6.0, 20.0, 16.0],
        [1., 4.0, 4.0, 4.0, 4.0],
    ])
    out = roi_align(feats, rois, (2, 3), 0.5, sampling_ratio, 'avg', aligned)
    ref = tv_roi_align(feats, rois, (2, 3), 0.5, sampling_ratio, aligned)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------
# open_clip tokenizer (bundled BPE vocabulary, no network)
# ---------------------------------------------------------------------------
def test_open_clip_tokenizer_offline():
    import open_clip
    tokens = open_clip.tokenize(['a red circle'])
    assert tokens.shape == (1, 77)
    row = tokens[0].tolist()
    assert row[0] == 49406  # <start_of_text>
    assert 49407 in row  # <end_of_text>
    eot = row.index(49407)
    # 'a', 'red', 'circle' in CLIP's BPE vocabulary, then zero padding.
    assert row[1:eot] == [320, 736, 7117]
    assert row[eot + 1:] == [0] * (76 - eot)

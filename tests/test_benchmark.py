"""tools/benchmark_train.py runs and reports every figure it promises."""
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_benchmark_reports_step_time_memory_params_and_flops(tmp_path):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(
        "_base_ = '%s'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2,\n"
        "             num_heads=4, feedforward_channels=128), img_size=32),\n"
        "             neck=dict(num_patches=16, embed_dim=64),\n"
        "             text_encoder=dict(width=64, layers=2),\n"
        "             head=dict(vision_dims=64, text_dims=64, embed_dims=32))\n"
        % osp.join(ROOT, 'configs', 'rils', 'rils_vittiny_toy.py'))
    run = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'benchmark_train.py'), str(cfg),
         '--batch-size', '4', '--iters', '1', '--warmup', '1', '--device', 'cpu'],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    rows = {m.group(1): m.groups()[1:] for m in re.finditer(
        r'^(fp32|bf16)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+x([\d.]+) speed$', out, re.M)}
    assert set(rows) == {'fp32', 'bf16'}
    assert all(float(v) > 0 for r in rows.values() for v in r)
    assert rows['fp32'][3] == '1.00'
    params = re.search(r'backbone ([\d.]+), neck ([\d.]+), text_encoder ([\d.]+)', out)
    assert params and 0.05 < float(params.group(1)) < 0.2  # 2 blocks x 64 wide
    flops = float(re.search(r'forward GFLOPs per image.*: ([\d.]+)', out).group(1))
    assert 0 < flops < 1

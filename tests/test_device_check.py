"""The device check's CPU dry run: ``tools/device_check.sh --device cpu --tiny`` runs the
CUDA tests' CPU variants and the whole benchmark path on toy models, and writes one JSON
and one log with every figure the GPU run reports (so the script cannot rot unseen)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_device_check_dry_run_on_cpu(tmp_path):
    out = tmp_path / 'check'
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=ROOT)
    run = subprocess.run(['bash', osp.join(ROOT, 'tools', 'device_check.sh'), '--device', 'cpu',
                          '--tiny', '--no-compile', '--iters', '2', '--out-dir', str(out)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    report = json.loads((out / 'device_check.json').read_text())
    log = (out / 'device_check.log').read_text()
    assert 'passed' in log and 'wrote' in log
    tests = report['cuda_tests']
    assert tests['exit_code'] == 0 and tests['failures'] == tests['errors'] == 0
    assert tests['tests'] > tests['skipped'] > 0  # CPU variants ran, GPU ones reported
    labels = [s['label'] for s in report['steps']]
    assert labels == ['ours RILS (eager)', 'ours CLIP (eager)']
    assert report['matmul_peak_tflops'] > 0 and report['batch_size'] == 4
    for step in report['steps']:
        assert len(step['times_s']) == 2 and step['step_s'] > 0
        assert step['img_s'] == pytest.approx(4 / step['step_s'])
        assert step['step_flops'] > 0 and 0 < step['mfu'] < 1
        assert step['tflops'] * 1e12 == pytest.approx(step['step_flops'] / step['step_s'])
        assert step['memory']['peak_mib'] > 0
    rils, clip = report['steps']
    assert rils['step_flops'] > clip['step_flops']  # + masked view, decoder, L_recon
    reader = report['webdataset_reader']
    assert reader['images'] > 0 and reader['img_s_per_worker'] > 0
    assert reader['output'] == [3, 32, 32]
    assert reader['workers_per_gpu'] >= 1

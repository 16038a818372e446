"""tools/analysis/recon_memory.py runs, and the recomputing L_recon needs less memory."""
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.mark.slow
def test_recomputing_recon_loss_peaks_lower_than_plain_autograd():
    env = dict(__import__('os').environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    out = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'analysis', 'recon_memory.py'), '--rows',
         '8192', '--texts', '1024', '--dim', '64', '--chunk-size', '512'],
        check=True, capture_output=True, text=True, env=env).stdout
    row = [line for line in out.splitlines() if re.match(r'\| 1024 \|', line)]
    assert len(row) == 1, out
    cells = [c.strip() for c in row[0].strip('|').split('|')]
    logits_mib, plain, recompute = float(cells[3]), float(cells[4]), float(cells[5])
    assert logits_mib == 32.0  # 8192 x 1024 fp32
    # autograd keeps every chunk's softmax (>= K x T floats); the Function one chunk at a time
    assert plain > logits_mib
    assert recompute < 0.5 * plain

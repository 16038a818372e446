"""rils_mm.benchmark: the parts, timings, memory and optimisers tools/benchmark_train.py
reports."""
import json
import os.path as osp
import subprocess
import sys
from argparse import Namespace

import pytest
import torch

from rils_mm.benchmark import report, train_step
from rils_mm.benchmark.inputs import caption_lengths, synthetic_batch
from rils_mm.benchmark.optim import adamw_implementation, slip_adamw
from rils_mm.benchmark.precision import precision_optim_wrapper
from rils_mm.benchmark.runners import OursRunner, aligned_count

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'benchmark_train.py')

TINY = ("_base_ = '%s'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2,\n"
        "             num_heads=4, feedforward_channels=128), img_size=32),\n"
        "             neck=dict(num_patches=16, embed_dim=64),\n"
        "             text_encoder=dict(width=64, layers=2, context_length=77),\n"
        "             head=dict(vision_dims=64, text_dims=64, embed_dims=32))\n")
RILS_BASE = osp.join(ROOT, 'configs', '_base_', 'models', 'rils_vittiny.py')
SCHEDULE = osp.join(ROOT, 'configs', '_base_', 'schedules', 'adamw_25e.py')


def _args(config, **kw):
    """The options of tools/benchmark_train.py, as its parser fills them."""
    opts = dict(config=str(config), compare=None, official=None, batch_size=4, iters=1,
                warmup=1, precision='fp32', captions='laion', device='cpu', threads=None,
                plain_adamw=False, fused_adamw=False, compile=False, no_memory=True,
                part_times=False, aligned_ratio=1.0, no_flops=False, cfg_options=None,
                compare_cfg_options=None, memory_curve=None, json=None, memory_of=None,
                global_batch=None)
    opts.update(kw)
    args = Namespace(**opts)
    train_step.setup(args)
    return args


@pytest.fixture
def tiny_cfg(tmp_path):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(TINY % RILS_BASE)
    return cfg


def test_parts_add_up_to_the_step_and_follow_the_setting(tiny_cfg):
    """Each part counted alone (the model's own stages on detached inputs) sums to the whole
    step; cutting captions to the longest in the batch cuts only the text tower's FLOPs."""
    args = _args(tiny_cfg, compare=str(tiny_cfg),
                 compare_cfg_options={'model.text_encoder.truncate_to_longest': False})
    specs = train_step.runner_specs(args)
    assert [train_step.spec_label(s) for s in specs] == ['tiny', 'tiny (B)']
    parts, steps = [], []
    for spec in specs:
        runner = train_step.build_runner(spec, args)
        parts.append(train_step.part_flops(runner))
        steps.append(train_step.whole_step_flops(runner))
    for p, (step_fwd, step_both) in zip(parts, steps):
        assert list(p) == ['intact view', 'masked view', 'decoder', 'text', 'losses']
        assert all(both > fwd > 0 for name, (fwd, both) in p.items() if name != 'losses')
        assert sum(both for _, both in p.values()) == pytest.approx(step_both, rel=0.02)
        assert sum(fwd for fwd, _ in p.values()) == pytest.approx(step_fwd, rel=0.02)
    assert parts[0]['intact view'] == parts[1]['intact view']
    assert parts[0]['text'][0] < 0.8 * parts[1]['text'][0]
    assert steps[1][1] > steps[0][1]  # uncut text: more FLOPs


def test_timed_steps_alternate_and_ratios_are_to_the_first(tiny_cfg):
    args = _args(tiny_cfg, iters=2, part_times=True)
    runners = [train_step.build_runner(s, args) for s in 2 * train_step.runner_specs(args)]
    results, peak = train_step.time_runners(runners, args, peak=1e-9)
    assert peak > 1e-9  # probed again after the steps; the better probe is kept
    for res in results:
        assert len(res['times_s']) == 2 and res['step_s'] > 0
        assert res['img_s'] == pytest.approx(4 / res['step_s'])
        assert res['achieved_gflops'] == pytest.approx(
            res['step_flops'][1] / res['step_s'] / 1e9)
        assert res['of_peak'] == pytest.approx(res['achieved_gflops'] / peak)
        assert set(res['part_times_s']) == {'intact view', 'masked view', 'decoder', 'text',
                                            'losses', 'optimizer step'}
        assert all(t > 0 for t in res['part_times_s'].values())
    rows = report.ratios(results)
    assert rows[0][1:] == (1.0, 1.0, None, 1.0)
    assert rows[1][1] == pytest.approx(results[1]['step_s'] / results[0]['step_s'])
    assert rows[1][4] == 1.0  # the same config: the same FLOPs
    text = report.report(results, args, peak)
    assert text.count('\n== tiny') == 2 and 'ratios vs tiny' in text


def test_aligned_ratio_fixes_how_many_images_rils_decodes(tiny_cfg):
    """RILS decodes only C; the benchmark fixes C to the first round(ratio * B) images
    (the head's fixed_aligned option), so the masked view and decoder cost that fraction of
    their full price. Only the runner's own model is built so: later models find C."""
    from mmpretrain.registry import MODELS

    from rils_mm.testing import tiny_rils_cfg
    flops = {}
    for ratio in (1.0, 0.5):
        runner = OursRunner(str(tiny_cfg), _args(tiny_cfg, aligned_ratio=ratio))
        assert runner.decoded == runner.model.head.fixed_aligned == 4 * ratio
        parts, step = train_step.part_flops(runner), train_step.whole_step_flops(runner)
        assert sum(p[1] for p in parts.values()) == pytest.approx(step[1], rel=0.02)
        flops[ratio] = parts
    assert flops[0.5]['intact view'] == flops[1.0]['intact view']
    assert flops[0.5]['text'] == flops[1.0]['text']
    for part in ('masked view', 'decoder'):
        assert flops[0.5][part][1] == pytest.approx(flops[1.0][part][1] / 2, rel=1e-6)
    with pytest.raises(ValueError, match='aligned-ratio'):
        aligned_count(1.5, 4)
    with pytest.raises(ValueError, match='aligned-ratio'):
        aligned_count(0.1, 4)  # rounds to no image at all
    head = MODELS.build(tiny_rils_cfg()).head
    assert head.fixed_aligned is None
    z = torch.eye(6)
    assert head.aligned_images(z, z).all()  # every image's own caption is its best match
    assert head.aligned_images(z, z.flip(0)).sum() == 0


def test_laion_like_caption_lengths_are_short_with_a_tail():
    eot = caption_lengths(10000)
    assert eot.min() >= 2 and eot.max() == 76  # SOT + >= 1 token; truncated at the context
    assert 12 <= eot.float().median() <= 16
    assert 0.001 < (eot == 76).float().mean() < 0.02
    _, tokens, _ = synthetic_batch(6, 32, 77, 16)
    eot = tokens.argmax(-1)
    assert torch.all(tokens[torch.arange(6), eot] == 49407)
    pos = torch.arange(77)
    assert torch.all(tokens[pos[None] > eot[:, None]] == 0)
    assert torch.all(tokens[:, 0] == 49406)
    _, full, _ = synthetic_batch(3, 32, 77, 16, captions='full')
    assert torch.all(full.argmax(-1) == 76)


def test_our_side_steps_through_the_configs_optimiser_wrapper(tmp_path):
    """By default our step is the configured one: the config's AdamW (fused)
    with its parameter groups, inside its (fp32 sibling of the AMP) wrapper,
    gradients freed after the step."""
    cfg = tmp_path / 'tiny_sched.py'
    cfg.write_text(TINY.replace("_base_ = '%s'", "_base_ = ['%s', '%s']")
                   % (RILS_BASE, SCHEDULE))
    runner = OursRunner(str(cfg), _args(cfg, batch_size=2))
    assert runner.optim_desc.startswith('config optim_wrapper: FiniteStepOptimWrapper')
    assert 'AdamW (fused' in runner.optim_desc
    decay = {id(p): g['weight_decay'] for g in runner.optim.param_groups
             for p in g['params']}
    m = runner.model
    assert decay[id(m.backbone.layers[0].attn.proj.bias)] == 0
    assert decay[id(m.backbone.layers[0].ln1.weight)] == 0
    assert decay[id(m.head.logit_scale)] == 0
    assert decay[id(m.backbone.layers[0].attn.proj.weight)] == 0.5
    before = m.backbone.layers[0].attn.proj.weight.detach().clone()
    runner.step()
    assert not torch.equal(before, m.backbone.layers[0].attn.proj.weight)
    assert all(p.grad is None for p in m.parameters())  # zero_grad after the step

    plain = OursRunner(str(cfg), _args(cfg, batch_size=2, plain_adamw=True))
    assert plain.optim_wrapper is None and len(plain.optim.param_groups) == 1


def test_one_precision_mapping_for_training_and_benchmark(tmp_path):
    """tools/train.py --amp and the benchmark's --precision build the same wrapper."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    from mmengine.config import Config
    from train import merge_args
    amp = dict(type='AmpOptimWrapper', loss_scale=512., dtype='float16',
               optimizer=dict(type='AdamW', lr=1e-3), clip_grad=dict(max_norm=1.))
    fp16 = precision_optim_wrapper(amp, 'fp16')
    assert fp16['type'] == 'FiniteStepAmpOptimWrapper' and fp16['loss_scale'] == 512.
    bf16 = precision_optim_wrapper(amp, 'bf16')
    assert (bf16['type'], bf16['dtype'], 'loss_scale' in bf16) == (
        'AutocastOptimWrapper', 'bfloat16', False)
    assert precision_optim_wrapper(amp, 'bf16', force_bf16_on_cpu=True)[
        'cpu_without_bf16'] == 'bf16'
    fp32 = precision_optim_wrapper(amp, 'fp32')
    assert fp32 == dict(type='FiniteStepOptimWrapper', optimizer=amp['optimizer'],
                        clip_grad=amp['clip_grad'])
    assert precision_optim_wrapper(amp, None) == amp and amp['type'] == 'AmpOptimWrapper'
    plain = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1))
    assert precision_optim_wrapper(plain, 'fp16')['loss_scale'] == 'dynamic'
    with pytest.raises(ValueError, match='precision'):
        precision_optim_wrapper(plain, 'int8')
    for flag, name in (('float16', 'fp16'), ('bfloat16', 'bf16'), (None, None)):
        args = Namespace(config='x.py', launcher='none', work_dir=str(tmp_path),
                         no_validate=False, amp=flag, resume=None, auto_scale_lr=False,
                         cfg_options=None)
        cfg = merge_args(Config(dict(optim_wrapper=amp)), args)
        assert cfg.optim_wrapper.to_dict() == precision_optim_wrapper(amp, name), flag


def test_official_side_optimiser_is_slips():
    model = torch.nn.Module()
    model.fc = torch.nn.Linear(4, 4)
    model.ln_1 = torch.nn.LayerNorm(4)
    model.positional_embedding = torch.nn.Parameter(torch.zeros(3, 4))
    model.logit_scale = torch.nn.Parameter(torch.zeros(()))
    optim = slip_adamw(model)
    wd, no_wd = optim.param_groups
    assert wd['weight_decay'] == 0.5 and no_wd['weight_decay'] == 0
    assert {id(p) for p in wd['params']} == {id(model.fc.weight),
                                            id(model.positional_embedding)}
    assert len(no_wd['params']) == 4
    assert optim.defaults['betas'] == (0.9, 0.98) and optim.defaults['eps'] == 1e-8
    # torch's default AdamW on CPU parameters is the for-loop implementation
    assert adamw_implementation(optim) == 'for-loop'
    params = list(model.parameters())
    assert adamw_implementation(torch.optim.AdamW(params, fused=True)) == 'fused'
    assert adamw_implementation(torch.optim.AdamW(params, foreach=True)) == 'foreach'


@pytest.mark.slow
def test_peak_memory_of_a_child_is_its_own():
    """A child started by a process holding 300 MiB: VmHWM (what every tool reports) is
    the child's own peak; ru_maxrss carries the parent's over fork + exec."""
    from rils_mm.benchmark.memory import peak_rss_mib, run_json_child
    held = bytearray(300 * 2**20)
    held[::4096] = b'\x01' * len(held[::4096])  # touch every page
    assert peak_rss_mib() >= 300
    memory_py = osp.join(ROOT, 'rils_mm', 'benchmark', 'memory.py')
    child = ('import importlib.util as u, json, resource\n'
             'spec = u.spec_from_file_location("memory", %r)\n'
             'memory = u.module_from_spec(spec); spec.loader.exec_module(memory)\n'
             'print(json.dumps(dict(hwm=memory.peak_rss_mib(), '
             'maxrss=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))' % memory_py)
    # `python -S -c` and memory.py alone (not the rils_mm package, which imports the
    # stack): the child imports nothing heavy
    out = run_json_child([sys.executable, '-S', '-c', child])
    assert out['hwm'] < 100
    assert out['maxrss'] >= 300  # why ru_maxrss is not used
    with pytest.raises(RuntimeError, match='exit 3'):
        run_json_child([sys.executable, '-c', 'import sys; sys.exit(3)'])
    del held


@pytest.mark.slow
def test_tool_writes_every_figure_to_json(tiny_cfg, tmp_path):
    """End to end: tools/benchmark_train.py --compare with its peak-memory processes."""
    out = tmp_path / 'bench.json'
    run = subprocess.run(
        [sys.executable, TOOL, str(tiny_cfg), '--compare', str(tiny_cfg),
         '--compare-cfg-options', 'model.text_encoder.truncate_to_longest=False',
         '--batch-size', '4', '--iters', '1', '--warmup', '1', '--device', 'cpu',
         '--json', str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert 'native bf16: ' in data['cpu'] and data['matmul_peak'] > 0
    a, b = data['results']
    assert (a['label'], b['label']) == ('tiny', 'tiny (B)')
    for res in (a, b):
        assert res['memory']['kind'] == 'process peak RSS, VmHWM'
        assert res['memory']['peak_mib'] > res['memory']['after_build_mib'] > 100
        assert sum(p[1] for p in res['parts'].values()) == pytest.approx(
            res['step_flops'][1], rel=0.02)
        assert res['step_s'] > 0 and 0 < res['of_peak']
    assert b['step_flops'][1] > a['step_flops'][1]  # uncut text: more FLOPs
    assert 'ratios vs tiny' in run.stdout


def test_global_batch_puts_g_columns_into_our_losses(tiny_cfg):
    """--global-batch G: the contrastive logits and the recon prototypes have G columns;
    the FLOPs of the losses grow with them, the encoders' do not; G = B is today's step."""
    from rils_mm.models.losses import recon

    seen = []
    real = recon.PrototypeKLDivergence.apply

    def spy(pred, target, text, *rest):
        seen.append(text.shape[0])
        return real(pred, target, text, *rest)

    recon.PrototypeKLDivergence.apply = spy
    try:
        flops, values = {}, {}
        for g in (None, 4, 16):
            torch.manual_seed(0)
            runner = OursRunner(str(tiny_cfg), _args(tiny_cfg, global_batch=g))
            values[g] = float(runner.loss())
            flops[g] = train_step.part_flops(runner)
    finally:
        recon.PrototypeKLDivergence.apply = real
    assert seen[0] == 4 and 16 in seen
    assert values[4] == values[None] and values[16] != values[None]
    assert flops[16]['losses'][0] > flops[4]['losses'][0]
    for part in ('intact view', 'masked view', 'decoder', 'text'):
        assert flops[16][part] == flops[4][part]


def test_global_batch_stands_in_for_the_official_gather():
    from types import SimpleNamespace

    from rils_mm.benchmark.global_batch import official_context
    gathered = lambda tensors: tensors  # noqa: E731  (the official one-process gather)
    losses = SimpleNamespace(utils=SimpleNamespace(all_gather_batch=gathered))
    context = official_context(losses, 12, 4, 8, 'cpu')
    image, text = torch.randn(4, 8, requires_grad=True), torch.randn(4, 8)
    with context():
        all_image, all_text = losses.utils.all_gather_batch([image, text])
    assert losses.utils.all_gather_batch is gathered  # restored
    assert all_image.shape == all_text.shape == (12, 8)
    assert torch.equal(all_image[:4], image.detach()) and not all_image.requires_grad
    assert not torch.equal(all_image[4:], all_text[4:])


def test_memory_curve_fits_the_measured_points_and_names_the_failed_one():
    """A point whose process failed (killed out of memory) is shown as failed and left
    out of the line peak = a + b * batch, which the other points determine."""
    sizes = [8, 16, 32, 64]
    peaks = [3000.0, 4000.0, 6000.0, None]  # 125 MiB per image over 2000 MiB fixed
    slope, at_budget = train_step.memory_fit(sizes[:3], peaks[:3], budget_mib=24 * 1024)
    assert slope == pytest.approx(125.0)
    assert at_budget == pytest.approx((24 * 1024 - 2000.0) / 125.0)
    table = report.memory_curve_table({'official': peaks, 'ours': [1000.0] * 4}, sizes,
                                      train_step.memory_fit).splitlines()
    official = table[1].split()
    assert official[1:6] == ['3000', '4000', '6000', 'failed', '125.0']
    assert float(official[6]) == pytest.approx(at_budget, abs=0.5)
    assert table[2].split()[-1] == 'inf'  # a peak that does not grow fits any batch

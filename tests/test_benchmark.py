"""tools/benchmark_train.py runs and reports every figure it promises."""
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))

TINY = ("_base_ = '%s'\n"
        "model = dict(backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2,\n"
        "             num_heads=4, feedforward_channels=128), img_size=32),\n"
        "             neck=dict(num_patches=16, embed_dim=64),\n"
        "             text_encoder=dict(width=64, layers=2, context_length=77),\n"
        "             head=dict(vision_dims=64, text_dims=64, embed_dims=32))\n")


def _gflops_rows(block):
    return {m.group(1).strip(): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        r'^  ([a-z ]+?)\s+([\d.]+)\s+([\d.]+)$', block, re.M)}


@pytest.mark.slow
def test_benchmark_compares_two_settings_with_parts_ratios_and_memory(tmp_path):
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(TINY % osp.join(ROOT, 'configs', '_base_', 'models', 'rils_vittiny.py'))
    run = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'benchmark_train.py'), str(cfg),
         '--compare', str(cfg), '--compare-cfg-options',
         'model.text_encoder.truncate_to_longest=False', '--batch-size', '4',
         '--iters', '1', '--warmup', '1', '--device', 'cpu'],
        capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert re.search(r'^CPU: .*flags: .*native bf16: (yes|no)', out, re.M)
    assert float(re.search(r'matmul peak \(fp32.*: ([\d.]+) GFLOP/s', out).group(1)) > 0
    blocks = out.split('\n== ')[1:]
    assert len(blocks) == 2
    parts = [_gflops_rows(b) for b in blocks]
    for rows in parts:
        assert {'intact view', 'masked view', 'decoder', 'text', 'losses', 'sum of parts',
                'whole step'} <= set(rows)
        assert all(both > fwd > 0 for name, (fwd, both) in rows.items() if name != 'losses')
        # the parts, counted one by one, add up to the whole step
        assert rows['sum of parts'][1] == pytest.approx(rows['whole step'][1], rel=0.02)
    # same encoder, fewer text FLOPs when the batch is cut to its longest caption
    assert parts[0]['intact view'] == parts[1]['intact view']
    assert parts[0]['text'][0] < 0.8 * parts[1]['text'][0]
    for block in blocks:
        assert re.search(r'step [\d.]+ s .* [\d.]+ img/s, [\d.]+ GFLOP/s achieved = \d+% '
                         r'of the matmul peak', block)
        assert int(re.search(r'peak memory (\d+) MiB', block).group(1)) > 100
    ratios = re.findall(r'^(.+?)\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)x$',
                        out.split('ratios vs')[1], re.M)
    assert len(ratios) == 2 and ratios[0][1:] == ('1.00', '1.00', '1.00', '1.00')
    assert float(ratios[1][4]) > 1  # uncut text: more FLOPs


def test_aligned_ratio_sets_how_many_images_rils_decodes(tmp_path):
    """RILS decodes only C; the benchmark fixes C to the first round(ratio * B)
    images, so the masked view and decoder cost that fraction of their full price.
    Only the runner's own model is forced: nothing leaks into later models."""
    from benchmark_train import OursRunner, parse_args, part_flops, setup, whole_step_flops
    from mmpretrain.registry import MODELS

    from rils_mm.models.heads import RILSHead
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(TINY % osp.join(ROOT, 'configs', '_base_', 'models', 'rils_vittiny.py'))
    flops = {}
    for ratio in (1.0, 0.5):
        args = parse_args([str(cfg), '--batch-size', '4', '--device', 'cpu',
                           '--aligned-ratio', str(ratio)])
        setup(args)
        runner = OursRunner(str(cfg), args)
        assert runner.decoded == 4 * ratio
        parts, step = part_flops(runner), whole_step_flops(runner)
        assert sum(p[1] for p in parts.values()) == pytest.approx(step[1], rel=0.02)
        flops[ratio] = parts
    assert flops[0.5]['intact view'] == flops[1.0]['intact view']
    assert flops[0.5]['text'] == flops[1.0]['text']
    for part in ('masked view', 'decoder'):
        assert flops[0.5][part][1] == pytest.approx(flops[1.0][part][1] / 2, rel=1e-6)
    with pytest.raises(SystemExit, match='aligned-ratio'):
        OursRunner(str(cfg), parse_args([str(cfg), '--device', 'cpu',
                                         '--aligned-ratio', '1.5']))
    # a model built afterwards in this process finds C itself (a 0.5 ratio leaking
    # into it would make exactly the first half of any batch "matched")
    from rils_mm.testing import tiny_rils_cfg
    head = MODELS.build(tiny_rils_cfg()).head
    assert 'aligned_images' in vars(runner.model.head)
    assert 'aligned_images' not in vars(head)
    z = torch.eye(6)
    assert head.aligned_images(z, z).all()  # every image's own caption is its best match
    assert RILSHead.aligned_images(head, z, z.flip(0)).sum() == 0


def test_laion_like_caption_lengths_are_short_with_a_tail():
    from benchmark_train import caption_lengths, synthetic_batch
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


def test_our_side_steps_through_the_configs_optimiser_wrapper(tmp_path):
    """By default our step is the configured one: the config's AdamW (fused)
    with its parameter groups, inside its (fp32 sibling of the AMP) wrapper,
    gradients freed after the step."""
    from benchmark_train import OursRunner, parse_args, setup
    cfg = tmp_path / 'tiny_sched.py'
    cfg.write_text(
        TINY.replace("_base_ = '%s'", "_base_ = ['%s', '%s']")
        % (osp.join(ROOT, 'configs', '_base_', 'models', 'rils_vittiny.py'),
           osp.join(ROOT, 'configs', '_base_', 'schedules', 'adamw_25e.py')))
    args = parse_args([str(cfg), '--batch-size', '2', '--device', 'cpu'])
    setup(args)
    runner = OursRunner(str(cfg), args)
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

    plain = OursRunner(str(cfg), parse_args([str(cfg), '--batch-size', '2', '--device',
                                             'cpu', '--plain-adamw']))
    assert plain.optim_wrapper is None and len(plain.optim.param_groups) == 1


def test_official_side_optimiser_is_slips():
    from benchmark_train import adamw_implementation, slip_adamw
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

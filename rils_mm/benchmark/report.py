"""The printout of ``tools/benchmark_train.py``."""
import statistics


def _gf(flops):
    """GFLOPs, with enough decimals for tiny test models."""
    g = flops / 1e9
    return f'{g:.2f}' if g >= 1 else f'{g:.5f}'


def header(runners, args, peak, threads) -> str:
    """The lines before the measurements: matmul peak, batch, optimisers, the set C."""
    lines = [f'matmul peak ({args.precision}, 1024^3 mm, {threads} threads): {peak:.1f} '
             'GFLOP/s before the steps (probed again after)',
             f'batch {args.batch_size}, {args.precision}, captions {args.captions}'
             f' (longest in batch: {int(runners[0].tokens.argmax(-1).max()) + 1} '
             f'of {runners[0].tokens.shape[1]} tokens), {args.warmup} warm-up + '
             f'{args.iters} timed steps per runner, alternating']
    if getattr(args, 'global_batch', None):
        lines.append(f'global batch {args.global_batch}: this process is rank 0 of '
                     f'{args.global_batch // args.batch_size}; the other ranks\' '
                     f'{args.global_batch - args.batch_size} image and text embeddings '
                     'are fixed (rils_mm.benchmark.global_batch)')
    for r in runners:
        lines.append(f'optimiser of {r.label}: {r.optim_desc}')
        if getattr(getattr(r, 'model', None), 'decode_aligned_only', False):
            lines.append(f'{r.label}: C (correctly matched, decoded) forced to '
                         f'{r.decoded} of {args.batch_size} images (--aligned-ratio '
                         f'{args.aligned_ratio})')
    return '\n'.join(lines)


def report(results, args, peak) -> str:
    """Parameters, FLOPs per part, times, memory of each runner; ratios of the others to
    the first."""
    B = args.batch_size
    out = [f'matmul peak used below: {peak:.1f} GFLOP/s (best probe)']
    for res in results:
        out.append(f'\n== {res["label"]}')
        out.append('parameters (M): ' + ', '.join(
            f'{k} {v:.2f}' for k, v in res['params_m'].items())
            + f', total {sum(res["params_m"].values()):.2f}')
        out.append(f'optimiser: {res["optimizer"]}')
        if res.get('parts'):
            out.append(f'{"GFLOPs per image":<30}{"forward":>10}{"fwd+bwd":>10}')
            for name, (fwd, both) in res['parts'].items():
                out.append(f'  {name:<28}{_gf(fwd / B):>10}{_gf(both / B):>10}')
            fwd = sum(p[0] for p in res['parts'].values())
            both = sum(p[1] for p in res['parts'].values())
            out.append(f'  {"sum of parts":<28}{_gf(fwd / B):>10}{_gf(both / B):>10}')
        if res.get('part_times_s'):
            out.append(f'{"time per part (best of 2)":<30}{"s":>10}{"GFLOP/s":>10}'
                       f'{"% of sum":>10}')
            total = sum(res['part_times_s'].values())
            for name, t in res['part_times_s'].items():
                fl = (res.get('parts') or {}).get(name)
                rate = f'{fl[1] / t / 1e9:.1f}' if fl else '-'
                out.append(f'  {name:<28}{t:>10.3f}{rate:>10}{100 * t / total:>9.1f}%')
            out.append(f'  {"sum":<28}{total:>10.3f}')
        if 'step_flops' in res:
            sf, sb = res['step_flops']
            out.append(f'  {"whole step":<28}{_gf(sf / B):>10}{_gf(sb / B):>10}')
        line = (f'step {res["step_s"]:.3f} s (median of '
                f'{", ".join(f"{t:.3f}" for t in res["times_s"])}), '
                f'{res["img_s"]:.2f} img/s')
        if 'achieved_gflops' in res:
            line += (f', {res["achieved_gflops"]:.1f} GFLOP/s achieved = '
                     f'{100 * res["of_peak"]:.0f}% of the matmul peak')
        out.append(line)
        if 'memory' in res:
            mem = res['memory']
            out.append(f'peak memory {mem["peak_mib"]:.0f} MiB ({mem["kind"]}'
                       + (f'; {mem["after_build_mib"]:.0f} MiB after building the model, '
                          f'so the steps add {mem["peak_mib"] - mem["after_build_mib"]:.0f}'
                          ' MiB' if 'after_build_mib' in mem else '') + ')')
    if len(results) > 1:
        out += ratio_lines(results)
    return '\n'.join(out)


def ratios(results):
    """[(label, time, speed, memory or None, FLOPs or None)] of each runner to the first."""
    a = results[0]
    rows = []
    for res in results:
        mem = (res['memory']['peak_mib'] / a['memory']['peak_mib']
               if 'memory' in res else None)
        fl = (res['step_flops'][1] / a['step_flops'][1] if 'step_flops' in res else None)
        rows.append((res['label'], res['step_s'] / a['step_s'], a['step_s'] / res['step_s'],
                     mem, fl))
    return rows


def ratio_lines(results):
    a = results[0]
    out = [f'\nratios vs {a["label"]} (same process, alternating):',
           f'{"runner":<34}{"time":>8}{"speed":>8}{"memory":>8}{"FLOPs":>8}']
    for label, time_r, speed, mem, fl in ratios(results):
        mem = '-' if mem is None else f'{mem:.2f}x'
        fl = '-' if fl is None else f'{fl:.2f}x'
        out.append(f'{label:<34}{time_r:>7.2f}x{speed:>7.2f}x{mem:>8}{fl:>8}')
    out.append(f'time ratio of each alternating pair (runner / {a["label"]}):')
    for res in results[1:]:
        pairs = [t / t0 for t, t0 in zip(res['times_s'], a['times_s'])]
        out.append(f'  {res["label"]:<32} ' + ', '.join(f'{r:.2f}' for r in pairs)
                   + f' (median {statistics.median(pairs):.2f})')
    return out


def memory_curve_table(rows, batch_sizes, fit) -> str:
    """The table of ``--memory-curve``: {label: [peak MiB per batch size, or None where
    that point's process failed, e.g. killed out of memory]} and a fit function
    ``(batch_sizes, peaks) -> (MiB per image, batch at 24 GiB)`` over the measured points."""
    lines = [f'{"runner":<40}' + ''.join(f'{b:>9}' for b in batch_sizes)
             + f'{"MiB/img":>9}{"batch@24GiB (fit)":>19}']
    for label, peaks in rows.items():
        line = f'{label:<40}' + ''.join(
            f'{p:>9.0f}' if p is not None else f'{"failed":>9}' for p in peaks)
        measured = [(b, p) for b, p in zip(batch_sizes, peaks) if p is not None]
        if len(measured) > 1:
            slope, at_budget = fit(*zip(*measured))
            line += f'{slope:>9.1f}{at_budget:>19.0f}'
        lines.append(line)
    return '\n'.join(lines)

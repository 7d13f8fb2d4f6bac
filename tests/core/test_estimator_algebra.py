"""The estimator's elementwise algebra, done slice by slice through reused buffers, gives the
same bits as the per-tensor formulas its docstrings state (fp32 and bf16, tensors larger and
smaller than a slice, non-contiguous ones)."""

import math

import pytest
import torch

from seamharden.core import estimator
from seamharden.core.estimator import _halve, _mirror, _perturb, _restore, _to_unit_directions


def _vectors(dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(37, 11), (5,), (64, 48), (1, 3)]
    make = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    make.append(torch.randn(9, 14, generator=gen).to(dtype).t())  # not contiguous: taken whole
    return make


def _reference_units(a, b, na, nb, c, s):
    ga, gb = a.float() / na, b.float() / nb
    return ((gb - c * ga) / s).to(a.dtype), ((ga - c * gb) / s).to(b.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk", [7, 1 << 18])
def test_sliced_algebra_equals_the_per_tensor_formulas(monkeypatch, dtype, chunk):
    monkeypatch.setattr(estimator, "CHUNK_ELEMENTS", chunk)
    theta, ga, gb = _vectors(dtype, 0), _vectors(dtype, 1), _vectors(dtype, 2)
    na, nb, c = 3.7, 0.41, 0.23
    s = math.sqrt(1 - c * c)

    units_a, units_b = [g.clone() for g in ga], [g.clone() for g in gb]
    _to_unit_directions(units_a, units_b, na, nb, c, s)
    for a, b, ua, ub in zip(ga, gb, units_a, units_b, strict=True):
        ref_a, ref_b = _reference_units(a, b, na, nb, c, s)
        assert torch.equal(ua, ref_a) and torch.equal(ub, ref_b)

    h = 1e-2
    params, direction = [t.clone() for t in theta], [u.clone() for u in units_a]
    applied = _perturb(params, direction, h)
    moved = [(t.float() + h * u.float()).to(dtype) for t, u in zip(theta, units_a, strict=True)]
    assert all(torch.equal(p, m) for p, m in zip(params, moved, strict=True))
    assert all(torch.equal(d, t) for d, t in zip(direction, theta, strict=True))  # the saved weights
    delta = torch.cat([(m.float() - t.float()).reshape(-1) for m, t in zip(moved, theta, strict=True)])
    u = torch.cat([x.float().reshape(-1) for x in units_a])
    assert applied == pytest.approx((delta @ u / (delta.norm() * u.norm())).item(), abs=1e-5)

    _halve(params, direction)
    halved = [((t.float() + m.float()) / 2).to(dtype) for t, m in zip(theta, moved, strict=True)]
    assert all(torch.equal(p, x) for p, x in zip(params, halved, strict=True))
    _mirror(params, direction)
    mirrored = [(2 * t.float() - x.float()).to(dtype) for t, x in zip(theta, halved, strict=True)]
    assert all(torch.equal(p, x) for p, x in zip(params, mirrored, strict=True))
    _restore(params, direction)
    assert all(torch.equal(p, t) for p, t in zip(params, theta, strict=True))


def test_a_swallowed_step_shows_in_the_applied_cosine():
    params = [torch.full((1000,), 1000.0, dtype=torch.bfloat16)]
    direction = [torch.randn(1000, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)]
    assert _perturb(params, direction, 1e-3) == 0.0  # 1000 + 1e-3 u rounds back to 1000 in bf16

import math

import torch
import torch.nn.functional as F

from coreset_core.losses import info_nce, nt_xent


def naive_nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent written out view by view, as in the SimCLR paper's algorithm 1."""
    z = F.normalize(torch.cat([a, b]), dim=1)
    n = len(a)
    total = torch.zeros(())
    for i in range(2 * n):
        positive = (i + n) % (2 * n)
        numerator = torch.exp(z[i] @ z[positive] / temperature)
        denominator = sum(
            torch.exp(z[i] @ z[k] / temperature) for k in range(2 * n) if k != i
        )
        total += -torch.log(numerator / denominator)
    return total / (2 * n)


def test_nt_xent_matches_the_naive_reference():
    torch.manual_seed(0)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    for temperature in (0.1, 0.5, 1.0):
        expected = naive_nt_xent(a, b, temperature)
        assert torch.allclose(nt_xent(a, b, temperature), expected, atol=1e-5)


def test_nt_xent_closed_form_for_orthogonal_examples():
    # Two examples on orthogonal axes, both views identical: each view sees its
    # positive at cosine 1 and two negatives at cosine 0.
    a = torch.eye(2)
    t = 0.5
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert math.isclose(nt_xent(a, a.clone(), t).item(), expected, rel_tol=1e-6)


def test_nt_xent_is_symmetric_in_the_views():
    torch.manual_seed(1)
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    assert torch.allclose(nt_xent(a, b), nt_xent(b, a), atol=1e-6)


def test_info_nce_closed_form():
    # Query equals its key; the queue holds one orthogonal and one opposite key.
    queries = torch.tensor([[1.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 1 + math.exp(-1 / t)))
    loss = info_nce(queries, queries, queue, t).item()
    assert math.isclose(loss, expected, rel_tol=1e-4)


def test_info_nce_matches_a_naive_reference():
    torch.manual_seed(2)
    q = F.normalize(torch.randn(5, 4), dim=1)
    k = F.normalize(torch.randn(5, 4), dim=1)
    queue = F.normalize(torch.randn(7, 4), dim=1)
    t = 0.2
    losses = []
    for i in range(5):
        logits = torch.cat([(q[i] @ k[i]).view(1), queue @ q[i]]) / t
        losses.append(-torch.log_softmax(logits, 0)[0])
    assert torch.allclose(
        info_nce(q, k, queue, t), torch.stack(losses).mean(), atol=1e-6
    )

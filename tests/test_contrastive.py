import torch

from coreset_core.backbones import build_backbone
from coreset_core.contrastive import MoCo, SimCLR


def small_moco(queue_size: int = 10, momentum: float = 0.9) -> MoCo:
    torch.manual_seed(0)
    return MoCo(build_backbone("resnet20"), 8, 0.2, momentum, queue_size)


def test_queue_replaces_the_oldest_keys_and_wraps():
    moco = small_moco(queue_size=10)
    first = torch.full((6, 8), 1.0)
    second = torch.full((6, 8), 2.0)
    moco.enqueue(first)
    assert moco.queue_pointer.item() == 6
    moco.enqueue(second)

    # Slots 6..9 and then 0..1 hold the second batch; 2..5 still the first.
    assert moco.queue_pointer.item() == 2
    assert torch.all(moco.queue[[6, 7, 8, 9, 0, 1]] == 2.0)
    assert torch.all(moco.queue[2:6] == 1.0)


def test_momentum_update_moves_keys_toward_queries():
    moco = small_moco(momentum=0.9)
    query_params = [p.detach().clone() for p in moco.backbone.parameters()]
    with torch.no_grad():
        for p in moco.backbone.parameters():
            p.add_(1.0)
    key_before = [p.clone() for p in moco.momentum_encoder[0].parameters()]
    moco.update_momentum_encoder()
    for key, old_key, query in zip(
        moco.momentum_encoder[0].parameters(), key_before, query_params
    ):
        expected = 0.9 * old_key + 0.1 * (query + 1.0)
        assert torch.allclose(key, expected, atol=1e-6)


def test_momentum_encoder_gets_no_gradient_and_queue_fills():
    moco = small_moco(queue_size=16)
    views = torch.randn(4, 3, 32, 32)
    loss, similarity = moco(views, views + 0.01 * torch.randn_like(views))
    loss.backward()
    assert all(p.grad is None for p in moco.momentum_encoder.parameters())
    assert moco.backbone.stem[0].weight.grad is not None
    assert moco.queue_pointer.item() == 4
    assert similarity.shape == (4,) and torch.all(similarity.abs() <= 1 + 1e-5)


def test_simclr_similarity_is_the_cosine_of_the_two_projections():
    torch.manual_seed(0)
    model = SimCLR(build_backbone("resnet20"), 16, 0.5).eval()
    views = torch.randn(3, 3, 32, 32)
    _, similarity = model(views, views)
    # Identical views in eval mode give identical projections: cosine 1.
    assert torch.allclose(similarity, torch.ones(3), atol=1e-5)


def test_backbones_map_images_to_embeddings():
    for name, dim in (("resnet20", 64), ("resnet18", 512)):
        backbone = build_backbone(name, in_channels=1)
        assert backbone(torch.randn(2, 1, 28, 28)).shape == (2, dim)

import pytest
import torch

from fesa_fairseq.pooling import POOLING_REGISTRY, build_pooling


def padded_batch(lengths, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), dim, generator=g)
    mask = torch.arange(max(lengths))[None, :] >= torch.tensor(lengths)[:, None]
    return x, mask


@pytest.mark.parametrize("name", sorted(POOLING_REGISTRY))
def test_padding_never_changes_the_output(name):
    torch.manual_seed(0)
    pool = build_pooling(name, 8)
    x, mask = padded_batch([5, 9, 3])
    x_noisy = torch.where(mask[..., None], 100 * torch.randn_like(x), x)  # anything at all on padding
    pooled, _ = pool(x_noisy, mask)
    for i, n in enumerate([5, 9, 3]):
        alone, _ = pool(x[i : i + 1, :n], None)
        torch.testing.assert_close(pooled[i], alone[0])
        longer, _ = pool(torch.cat([x[i : i + 1, :n], torch.randn(1, 4, 8)], 1), torch.arange(n + 4)[None] >= n)
        torch.testing.assert_close(longer[0], alone[0])


@pytest.mark.parametrize("name", sorted(POOLING_REGISTRY))
def test_weights_sum_to_one_over_real_frames_and_vanish_on_padding(name):
    pool = build_pooling(name, 8)
    x, mask = padded_batch([4, 7, 1, 7])
    _, w = pool(x, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(4))
    assert (w[mask] == 0).all()
    assert (w[~mask] > 0).all()


def test_mean_pooling_is_the_plain_mean_of_real_frames():
    pool = build_pooling("mean", 8)
    x, mask = padded_batch([4, 7, 2])
    pooled, _ = pool(x, mask)
    for i, n in enumerate([4, 7, 2]):
        torch.testing.assert_close(pooled[i], x[i, :n].mean(0))


def test_attention_follows_the_learned_scores():
    """score = tanh(w·h + b): the frame whose projection is largest gets the largest weight."""
    pool = build_pooling("attention", 2)
    with torch.no_grad():
        pool.score.weight.copy_(torch.tensor([[1.0, 0.0]]))
        pool.score.bias.zero_()
    x = torch.tensor([[[0.1, 5.0], [2.0, -1.0], [-1.0, 0.0]]])
    pooled, w = pool(x, None)
    expected = torch.softmax(torch.tanh(torch.tensor([0.1, 2.0, -1.0])), 0)
    torch.testing.assert_close(w[0], expected)
    torch.testing.assert_close(pooled[0], expected @ x[0])


def test_unknown_pooling_is_named():
    with pytest.raises(ValueError, match="unknown pooling 'max'; registered: attention, mean"):
        build_pooling("max", 8)

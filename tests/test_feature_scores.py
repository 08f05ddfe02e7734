"""The feature-space scores of experiments/feature_scores.py: kNN on normalised features, and
the hooks that read the hidden layers of every network."""

import numpy as np
import pytest
import torch

from osr_infer.preprocess import PREPROCESSING
from osr_train.feature_scores import LAYERS, KnnScore, Standardised, hidden_features
from osr_train.models import ConvNet, WideConvNet, WideLeakySiameseNet


def test_knn_score_is_the_cosine_similarity_of_the_kth_nearest_bank_embedding():
    bank = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)
    query = np.array([[3.0, 0.0], [0.0, -2.0]], dtype=np.float32)  # length does not matter: cosine
    first = KnnScore(k=1).fit(bank).score(query)
    second = KnnScore(k=2).fit(bank).score(query)
    np.testing.assert_allclose(first, [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(second, [np.sqrt(0.5), -np.sqrt(0.5)], atol=1e-6)
    # Scored in chunks, the same numbers.
    np.testing.assert_array_equal(KnnScore(k=2).fit(bank).score(query, chunk=1), second)


def test_knn_bank_is_a_seeded_subset_and_k_is_checked():
    features = np.random.default_rng(0).normal(size=(500, 8)).astype(np.float32)
    a, b = KnnScore(k=3, bank_size=100, seed=4).fit(features), KnnScore(k=3, bank_size=100, seed=4).fit(features)
    assert a.bank.shape == (100, 8)
    np.testing.assert_array_equal(a.bank, b.bank)
    np.testing.assert_allclose(np.linalg.norm(a.bank, axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="k must be at least 1"):
        KnnScore(k=0)
    with pytest.raises(ValueError, match="cannot give a 10-th"):
        KnnScore(k=10).fit(features[:5])


def test_standardised_scores_centre_the_held_out_knowns():
    held = np.array([1.0, 2.0, 3.0, 4.0])
    z = Standardised().fit(held)
    np.testing.assert_allclose(z(held).mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(z(held).std(), 1.0)
    assert Standardised().fit(np.ones(3))(np.array([2.0])) == pytest.approx(1.0)  # no division by a zero spread


@pytest.mark.parametrize("architecture", [ConvNet, WideConvNet, WideLeakySiameseNet])
def test_hidden_features_are_the_layers_they_name(architecture):
    torch.manual_seed(0)
    model = architecture(10, (1, 28, 28)).eval()
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    out = hidden_features(model, images, PREPROCESSING, batch_size=2)
    assert set(out) == {*LAYERS, "logits"}
    x = torch.from_numpy(PREPROCESSING.normalize(images))
    with torch.no_grad():
        logits, penultimate = model.forward_with_features(x)
        body = model.body(x) if hasattr(model, "body") else torch.flatten(model.pool(model.relu(model.conv2(model.pool(model.relu(model.conv1(x)))))), 1)
        pre = model.fc1(body)
    np.testing.assert_allclose(out["logits"], logits.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["penultimate"], penultimate.numpy(), atol=1e-5)
    np.testing.assert_allclose(out["hidden_pre"], pre.numpy(), atol=1e-5)
    # After the activation: equal to the pre-activation where positive, and below it elsewhere
    # (zero for a ReLU head, a tenth for the leaky one).
    positive = pre.numpy() > 0
    np.testing.assert_allclose(out["hidden"][positive], pre.numpy()[positive], atol=1e-5)
    slope = 0.1 if "Leaky" in architecture.__name__ else 0.0
    np.testing.assert_allclose(out["hidden"][~positive], slope * pre.numpy()[~positive], atol=1e-5)
    assert not model.fc1._forward_hooks and not model.fc2._forward_pre_hooks  # the hooks are removed

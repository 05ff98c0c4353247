"""A three-layer net built from the layers of two other forward modules.

``affine_relu`` and ``affine`` come from ``layer_utils.py``, ``softmax_loss`` from
``losses.py``, both beside this file: gradgen reads them (it runs nothing), differentiates
what this loss calls, and writes their backwards into this file's generated module, which
imports nothing of theirs. Its header records their digests, so editing ``layer_utils.py``
makes ``generated/three_layer_net.py`` stale for ``gradgen --check``.
"""

# Shape annotations ("N, D") are strings gradgen reads, not type expressions.
# ruff: noqa: F821

from layer_utils import affine, affine_relu
from losses import softmax_loss


def three_layer_loss(
    X: "N, D", y: "N", W1: "D, H", b1: "H", W2: "H, M", b2: "M", W3: "M, C", b3: "C"
):
    h1 = affine_relu(X, W1, b1)
    h2 = affine_relu(h1, W2, b2)
    scores = affine(h2, W3, b3)
    loss = softmax_loss(scores, y)
    return loss

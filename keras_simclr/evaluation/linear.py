"""Linear evaluation: a softmax classifier trained on frozen features."""

import math

import keras
import numpy as np

from keras_simclr import _validation
from keras_simclr.evaluation.knn import extract_features
from keras_simclr.evaluation.knn import resolve_encoder
from keras_simclr.evaluation.knn import resolve_num_classes
from keras_simclr.evaluation.knn import top_k_accuracies


def linear_evaluation(
    encoder,
    train_data,
    test_data,
    num_classes=None,
    epochs=100,
    batch_size=256,
    learning_rate=1e-3,
    weight_decay=0.0,
    standardize=True,
    verbose=0,
    preprocessing=None,
):
    """Top-1 and top-5 accuracy of a linear classifier on frozen features.

    The linear evaluation protocol of SimCLR: the encoder is frozen, and a
    linear classifier (multinomial logistic regression) is trained on its
    features to classify the training images, then scored on the test
    images.

    The features of both sets are computed once, with `training=False`
    (batch norm in inference mode). Given a `SimCLRPretrainer` (or a
    `SimCLRClassifier`), they are its encoder's features of the images after
    its evaluation transform, as `extract_features` computes them: images at
    the view size pass unchanged, others get the augmentation's
    `training=False` transform (for the `"imagenet"` preset, a centre crop
    of 87.5% resized bicubically to the view size).

    With `standardize=True`, each feature is shifted and scaled to zero mean
    and unit variance over the training set (the same shift and scale
    applied to the test set), which makes the problem well conditioned for
    a first-order optimiser. The classifier is a
    float32 `keras.layers.Dense(num_classes)` with zero initial weights,
    trained with Adam on the mean softmax cross-entropy plus
    `weight_decay * sum(kernel ** 2)`, for `epochs` passes over the shuffled
    training features in batches of `batch_size`, with the learning rate
    decaying from `learning_rate` to 0 along a cosine. Keras has no L-BFGS;
    the objective is convex, so with enough steps and the decay to 0 Adam
    ends at its minimum, up to what the epochs allow (the same minimum as
    scikit-learn's `LogisticRegression(C)` with
    `weight_decay = 1 / (2 * C * num_train_images)`).

    Args:
        encoder: a `SimCLRPretrainer` or `SimCLRClassifier`, or a Keras
            model or layer from images to feature vectors `(N, F)`, e.g.
            `SimCLRPretrainer.encoder`.
        train_data: a tuple `(images, labels)` of arrays, or a
            `tf.data.Dataset` yielding `(images, labels)`, batched or not.
        test_data: the images to score, in the same forms.
        num_classes: int >= 2, or `None` to take the largest label plus one.
        epochs: positive int, passes over the training features. Defaults
            to 100.
        batch_size: positive int, the batch of the encoder's forward passes
            and of the classifier's training. Defaults to 256.
        learning_rate: positive float, the initial Adam learning rate.
            Defaults to 1e-3.
        weight_decay: non-negative float, the L2 penalty on the classifier's
            kernel (not its bias). Defaults to 0.
        standardize: bool, whether to standardise the features with the
            training set's mean and standard deviation. Defaults to True.
        verbose: the classifier's `fit()` verbosity, 0, 1 or 2. Defaults
            to 0.
        preprocessing: a callable applied to each batch of images before
            the encoder, or None: the evaluation transform of a given
            pretrainer or classifier, else the images as they are.

    Returns:
        A dict with `"top1"`, the test accuracy, and, when there are more than
        5 classes, `"top5"`, the fraction of test images whose class is among
        the 5 largest logits (ties in favour of the lower class id).

    Raises:
        ValueError: if an argument has the wrong type, shape or range.

    Example:

    ```python
    result = keras_simclr.evaluation.linear_evaluation(
        pretrainer, (train_images, train_labels),
        (test_images, test_labels), epochs=100,
    )
    print(result["top1"], result["top5"])
    ```

    References:
        - [Chen et al., 2020](https://arxiv.org/abs/2002.05709), SimCLR,
          Section 2.3 and Appendix B.6.
    """
    _validation.check_num_classes(num_classes, allow_none=True)
    _validation.check_int(epochs, "epochs")
    _validation.check_int(batch_size, "batch_size")
    _validation.check_positive_number(learning_rate, "learning_rate")
    _validation.check_number(weight_decay, "weight_decay", minimum=0)
    _validation.check_bool(standardize, "standardize")
    if isinstance(verbose, bool):  # Keras reads False and True as 0 and 1
        verbose = int(verbose)
    verbose = _validation.check_choice(verbose, "verbose", (0, 1, 2))
    encoder, preprocessing = resolve_encoder(encoder, preprocessing)
    train_features, train_labels = extract_features(
        encoder, train_data, batch_size=batch_size, name="train_data",
        preprocessing=preprocessing,
    )
    test_features, test_labels = extract_features(
        encoder, test_data, batch_size=batch_size, name="test_data",
        preprocessing=preprocessing,
    )
    num_classes = resolve_num_classes(num_classes, train_labels, test_labels)
    if standardize:
        mean = train_features.mean(axis=0)
        std = train_features.std(axis=0)
        # A constant feature carries nothing; leave it at zero.
        std = np.where(std > 1e-6, std, 1.0)
        train_features = (train_features - mean) / std
        test_features = (test_features - mean) / std

    classifier = keras.Sequential(
        [
            keras.Input((train_features.shape[1],), dtype="float32"),
            keras.layers.Dense(
                num_classes,
                kernel_initializer="zeros",
                kernel_regularizer=(
                    keras.regularizers.L2(weight_decay) if weight_decay else None
                ),
                dtype="float32",
                name="linear_classifier",
            ),
        ],
        name="linear_evaluation",
    )
    steps = epochs * math.ceil(len(train_features) / batch_size)
    classifier.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(
                float(learning_rate), decay_steps=steps
            )
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    classifier.fit(
        train_features,
        train_labels,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    logits = classifier.predict(test_features, batch_size=batch_size, verbose=0)
    return top_k_accuracies(np.asarray(logits, "float32"), test_labels)

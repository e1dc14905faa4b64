"""Evaluation of frozen encoder features: weighted kNN and linear probing."""

from keras_simclr.evaluation.knn import extract_features
from keras_simclr.evaluation.knn import knn_accuracy
from keras_simclr.evaluation.knn import knn_predict
from keras_simclr.evaluation.knn import knn_scores
from keras_simclr.evaluation.linear import linear_evaluation

"""Keras callbacks for SimCLR training runs."""

from keras_simclr.callbacks.backup_and_restore import BackupAndRestore
from keras_simclr.callbacks.stop_at_step import StopAtStep
from keras_simclr.callbacks.knn_monitor import KNNMonitor

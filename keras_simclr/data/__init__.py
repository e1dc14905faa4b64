"""Input pipelines: `tf.data` datasets for every Keras backend.

Sources give unbatched examples as dicts, `{"image": uint8 (H, W, C),
"label": int32}` (no `"label"` when unlabelled), plus the file name or path
where known:

- `from_tfds`: a TensorFlow Datasets dataset by name (offline once
  prepared);
- `from_image_folder`: a folder of class subfolders, or a flat folder;
- `from_image_files`: a list of image files (and labels);
- `from_arrays`: NumPy arrays.

Image files are streamed from disk, decoded as the pipeline reaches them.

`pretraining_dataset` and `evaluation_dataset` turn them into batches for
`fit`, `evaluate` and `predict`; their `with_labels=False` gives images
only, as a pretrainer without a linear probe needs; `take_label_fraction`,
`label_fraction_indices`, `read_subset_file` and `filter_by_file_names`
make the labelled subsets of semi-supervised learning.

`tf.data` runs TensorFlow whatever the Keras backend; Keras feeds its
batches to JAX and PyTorch models through its own adapters.
"""

from keras_simclr.data.arrays import from_arrays
from keras_simclr.data.image_folder import from_image_files
from keras_simclr.data.image_folder import from_image_folder
from keras_simclr.data.image_folder import list_image_files
from keras_simclr.data.label_fractions import label_fraction_indices
from keras_simclr.data.label_fractions import take_label_fraction
from keras_simclr.data.pipeline import evaluation_dataset
from keras_simclr.data.pipeline import pretraining_dataset
from keras_simclr.data.subsets import filter_by_file_names
from keras_simclr.data.subsets import read_subset_file
from keras_simclr.data.tfds import from_tfds

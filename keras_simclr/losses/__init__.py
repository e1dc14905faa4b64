"""The loss functions of the self-supervised objectives.

Each is a plain function in `keras.ops` that `keras_simclr.objectives`
calls. The `keras.losses.Loss` classes beside them (`NTXent`, `BYOL`, ...)
are deprecated: train with `SimCLRPretrainer(objective=...)`, or call the
function.
"""

from keras_simclr.losses.barlow_twins import BarlowTwins
from keras_simclr.losses.barlow_twins import barlow_twins
from keras_simclr.losses.byol import BYOL
from keras_simclr.losses.byol import byol
from keras_simclr.losses.distillation import distillation_loss
from keras_simclr.losses.moco import MoCoInfoNCE
from keras_simclr.losses.moco import moco_infonce
from keras_simclr.losses.nt_xent import NTXent
from keras_simclr.losses.nt_xent import contrastive_metrics
from keras_simclr.losses.nt_xent import nt_xent
from keras_simclr.losses.simsiam import SimSiam
from keras_simclr.losses.simsiam import simsiam
from keras_simclr.losses.supervised_contrastive import SupervisedContrastive
from keras_simclr.losses.supervised_contrastive import supervised_contrastive
from keras_simclr.losses.unigrad import UniGrad
from keras_simclr.losses.unigrad import unigrad
from keras_simclr.losses.unigrad import unigrad_correlation
from keras_simclr.losses.unigrad import update_correlation
from keras_simclr.losses.vicreg import VICReg
from keras_simclr.losses.vicreg import vicreg
from keras_simclr.losses._deprecated import moved_to_momentum

__getattr__ = moved_to_momentum(__name__, ("cosine_momentum", "update_queue"))

"""LayerNorm modules in the three forms of the design: feed-forward, convolutional, recurrent."""

from lndeploy.nn.layernorm import ChannelLayerNorm, LayerNorm
from lndeploy.nn.recurrent import LNElmanCell, LNGRUCell, LNLSTMCell, Recurrent

__all__ = ["LayerNorm", "ChannelLayerNorm", "LNElmanCell", "LNLSTMCell", "LNGRUCell", "Recurrent"]

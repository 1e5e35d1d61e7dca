"""All layers of ``kiln.nn``."""
from kiln.nn.layers.activations import *  # noqa: F401,F403
from kiln.nn.layers.base import Module  # noqa: F401
from kiln.nn.layers.containers import Sequential  # noqa: F401
from kiln.nn.layers.convolution import (Conv1d, Conv2d, Conv3d, ConvTranspose1d,  # noqa: F401
                                        ConvTranspose2d, ConvTranspose3d)
from kiln.nn.layers.distributed import (AllToShardedLinear, FullyShardedModule,  # noqa: F401
                                        QuantizedAllToShardedLinear,
                                        QuantizedShardedToAllLinear, ShardedToAllLinear,
                                        fully_shard, shard_inplace, shard_linear)
from kiln.nn.layers.dropout import Dropout, Dropout2d, Dropout3d  # noqa: F401
from kiln.nn.layers.embedding import Embedding  # noqa: F401
from kiln.nn.layers.linear import Bilinear, Identity, Linear  # noqa: F401
from kiln.nn.layers.normalization import (BatchNorm, GroupNorm, InstanceNorm, LayerNorm,  # noqa: F401
                                          RMSNorm)
from kiln.nn.layers.pooling import (AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d,  # noqa: F401
                                    MaxPool3d)
from kiln.nn.layers.quantized import (QQLinear, QuantizedEmbedding, QuantizedLinear,  # noqa: F401
                                      quantize)
from kiln.nn.layers.positional_encoding import ALiBi, RoPE, SinusoidalPositionalEncoding  # noqa: F401
from kiln.nn.layers.recurrent import GRU, LSTM, RNN  # noqa: F401
from kiln.nn.layers.transformer import (MultiHeadAttention, Transformer,  # noqa: F401
                                        TransformerDecoder, TransformerDecoderLayer,
                                        TransformerEncoder, TransformerEncoderLayer)
from kiln.nn.layers.upsample import Upsample  # noqa: F401

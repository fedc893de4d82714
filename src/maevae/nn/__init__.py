"""Neural-network layers with no probabilistic meaning: masked and causal convolutions,
MADE, PixelCNN / PixelCNN++, ResNet and DenseNet blocks, weight normalisation.
"""

__all__: list[str] = []

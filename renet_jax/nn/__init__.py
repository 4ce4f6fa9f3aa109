"""The networks, as Flax linen modules: the recurrent cells (`cells`), the ReNet layer
of four bidirectional sweeps (`renet`), the convolutional and deconvolutional RNNs
(`conv_rnn`), stride-equals-kernel transposed convolutions (`upsampling`), the VGG-16
front end and its weight files (`vgg`), the classifiers, ReSeg and the video segmenter
(`models`), and the losses on their outputs (`losses`)."""

"""Deep segmentation networks of segbench (FCN, DeconvNet, U-Net, SegNet, DilatedNet).

``deep.models`` holds the networks (:func:`deep.models.create_model`), ``deep.engine`` trains
them, ``deep.method`` makes each a segbench method and ``deep.weights`` loads ImageNet VGG16
weights into the encoders.
"""

"""Deep segmentation networks of segbench (FCN, DeconvNet, U-Net, SegNet, DilatedNet).

``deep.models`` holds the network registry (:func:`deep.models.create_model`),
``deep.weights`` loads ImageNet VGG16 weights into the encoders and ``deep.summary``
builds the parameter / FLOP table of all networks.
"""

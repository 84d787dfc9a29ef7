"""CIFAR-10's fixed sizes, in a module that imports nothing (no torch, no numpy): the data reader,
the models, the figures, the report and the estimate all read them here."""

NUM_CLASSES = 10  # labels 0..9: every model maps an image to this many logits (builders take no num_classes)
# Images in the official train and test splits: fewer is a subset (a smoke run, not the recipe).
FULL_TRAIN, FULL_TEST = 50_000, 10_000

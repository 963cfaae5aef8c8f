"""Models defined by other models, as specs: a finished training run named ``trained:<run>``
(trained.py) and a weight interpolation of two models (interpolation.py).

Pure spec work, no I/O: raybench.catalog parses them where a matrix is read, and
raybench.models resolves them where the model is built (models/trained.py reads the run,
models/interpolate.py mixes the weights). Above raybench.specs, below raybench.models.
"""

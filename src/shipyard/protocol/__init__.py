"""Wire formats: KServe v2 (JSON and binary tensors) and the friendly /predict API.

Nothing here imports a web framework, grpc or a database: codecs turn bytes into named numpy arrays and
back, and know nothing of models.
"""

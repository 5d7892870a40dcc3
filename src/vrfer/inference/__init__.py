"""From an image to the answers: loading (images), the model's front door (loader: a name, file or ONNX graph ->
a classifier: torch_backend, onnx_backend), the pipeline (image -> faces -> crops -> probabilities), the
representation the personal heads read, post-processing (prior, class subset), and one wearer's stream (session:
profile, reference, smoothing). pipeline_spec writes the pipeline down as data for the exported model."""

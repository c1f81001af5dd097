"""The TensorFlow/Keras backend of twinbench."""
